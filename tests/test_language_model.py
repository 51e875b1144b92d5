"""The course's language model: its tokenizer, its KV cache, batched decoding, and the limits serving relies on."""

from __future__ import annotations

import pytest
import torch

from course_utils.language_model import (Decoder, KVCache, complete, generate_ids, load_language_model,
                                         train_tokenizer, zen_of_python)


@pytest.fixture(scope="module")
def lm():
    return load_language_model()


def test_the_text_is_the_zen_of_python():
    lines = zen_of_python()
    assert lines[0] == "The Zen of Python, by Tim Peters" and len(lines) == 20
    assert "Beautiful is better than ugly." in lines


def test_the_shipped_tokenizer_is_what_training_makes_and_round_trips_any_utf8(lm):
    trained = train_tokenizer(zen_of_python())
    assert trained.to_str() == lm.tokenizer.to_str()
    for text in ["Beautiful is better than ugly.", "안녕하세요 🚀", "tab\tand\nnewline", "x" * 300]:
        assert lm.tokenizer.decode(lm.tokenizer.encode(text).ids) == text
    assert lm.tokenizer.token_to_id("<|endoftext|>") == 0


def test_greedy_decoding_recites_the_zen(lm):
    assert complete(lm, "Beautiful is") == " better than ugly."
    assert complete(lm, "There should") == " be one-- and preferably only one --obvious way to do it."


def test_the_kv_cache_gives_the_same_tokens_as_recomputing(lm):
    prompt = lm.tokenizer.encode("Although").ids
    cached = list(generate_ids(lm.model, prompt, 120, stop_at_eos=False, use_cache=True))
    recomputed = list(generate_ids(lm.model, prompt, 120, stop_at_eos=False, use_cache=False))
    assert cached == recomputed and len(cached) == 120


def test_sequences_decoded_together_get_the_tokens_they_get_alone(lm):
    """Continuous batching must not change an answer: each sequence joins at its own step and position."""
    prompts = ["Beautiful is", "If the implementation", "Now", "Errors should never pass silently.<|endoftext|>"]
    alone = [list(generate_ids(lm.model, lm.tokenizer.encode(p).ids, 25, temperature=0.8, seed=i, stop_at_eos=False))
             for i, p in enumerate(prompts)]
    decoder = Decoder(lm.model, slots=3)
    waiting = list(enumerate(prompts))
    running, together = [], {}
    while waiting or running:
        while waiting and len(running) < 3:   # a slot frees, the next request joins mid-way
            index, prompt = waiting.pop(0)
            sequence = decoder.add(lm.tokenizer.encode(prompt).ids, 25, temperature=0.8, seed=index, stop_at_eos=False)
            together[index] = sequence
            running.append(sequence)
        decoder.step(running)
        for sequence in [s for s in running if s.finish_reason]:
            running.remove(sequence)
            decoder.finish(sequence)
    assert [together[i].generated for i in range(len(prompts))] == alone


def test_eos_ends_a_sequence_without_emitting_it(lm):
    decoder = Decoder(lm.model, slots=1)
    sequence = decoder.add(lm.tokenizer.encode("Flat is").ids, 50)
    tokens = []
    while not sequence.finish_reason:
        tokens += [t for t in decoder.step([sequence]) if t is not None]
    assert sequence.finish_reason == "stop" and 0 not in tokens
    assert lm.tokenizer.decode(tokens) == " better than nested."


@pytest.mark.parametrize("prompt, max_tokens, message", [
    ([], 5, "the prompt has no tokens"),
    ([5], 0, "max_tokens is 0: ask for at least 1 token"),
    ([5] * 250, 10, r"prompt \(250 tokens\) \+ max_tokens \(10\) exceeds the model's context of 256 positions"),
])
def test_requests_that_cannot_be_decoded_are_refused_with_the_reason(lm, prompt, max_tokens, message):
    with pytest.raises(ValueError, match=message):
        Decoder(lm.model, slots=1).add(prompt, max_tokens)


def test_a_full_cache_says_so_and_a_finished_sequence_frees_its_slot(lm):
    decoder = Decoder(lm.model, slots=1)
    first = decoder.add([5], 3)
    with pytest.raises(RuntimeError, match="all 1 KV-cache slots are in use"):
        decoder.add([5], 3)
    decoder.finish(first)
    assert decoder.add([5], 3).slot == first.slot


def test_the_cache_size_is_layers_heads_positions_and_dims(lm):
    config = lm.model.config
    assert KVCache(config, slots=2).megabytes() == pytest.approx(
        2 * 2 * config.layers * config.heads * config.max_context * (config.dim // config.heads) * 4 / 1e6)


def test_limits_refuse_a_temperature_that_would_break_sampling(lm):
    from course_utils.language_model import Limits, next_token

    with pytest.raises(ValueError, match="use 0 for greedy decoding, or at least 0.01"):
        Limits().check(lm.tokenizer, "Beautiful is", {"temperature": 1e-310})
    logits = lm.model(torch.tensor([lm.tokenizer.encode("Beautiful is").ids]))[0, -1]
    with pytest.raises(RuntimeError):   # what a server would meet without the check
        next_token(logits.detach(), 1e-310, torch.Generator().manual_seed(0))
    assert next_token(logits.detach(), 0.01, torch.Generator().manual_seed(0)) == int(logits.argmax())
