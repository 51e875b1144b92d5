"""A small causal language model the course trains itself: its text, its tokenizer, the model, its KV cache.

* the text: the Zen of Python, which every Python ships (the `this` module), one aphorism a
  document; training reads them as one stream in a seeded random order, each ending in the
  end-of-text token, so the model learns where a line ends and that any line may follow;
* the tokenizer: a byte-level BPE tokenizer trained with Hugging Face `tokenizers` (the library
  behind most LLM tokenizers), saved as the usual `tokenizer.json`. Byte-level means every UTF-8
  text has tokens: an unknown word falls back to its bytes;
* the model: a decoder-only transformer (GPT-style: token and position embeddings, pre-norm
  blocks of causal self-attention and an MLP, an output head tied to the token embedding) in
  plain torch, so that every step of decoding, and the KV cache, is visible;
* the KV cache: `KVCache` keeps each sequence's keys and values in a slot, so a decoding step
  computes one new position instead of the whole prefix again; sequences at different
  positions decode together in one batch, which is what continuous batching needs.

Like the other models, lessons load the weights the course ships (`load_language_model`),
trained once on the AVX2 code path by `make models`, so that every CPU decodes the same text.

Serving needs only torch and `tokenizers` from here: the servers' model folders hold a copy of this
file beside the weights (Triton's model.py and TorchServe's handler import it from there), as a
deployed model carries its own code.
"""

from __future__ import annotations

import codecs
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

EOS = "<|endoftext|>"
TOKENIZER_FILE = Path(__file__).parent / "weights" / "zen_tokenizer.json"   # beside the other shipped weights
MAX_CONTEXT = 256   # positions the model knows: prompt + generated tokens


# ----- the text ------------------------------------------------------------------------------
def zen_of_python() -> list[str]:
    """The Zen of Python, one line per aphorism (title first), read from the `this` module's source.

    Importing `this` would print it; its source holds it ROT13-encoded.
    Introduced in 13_language_model.
    """
    source = Path(importlib.util.find_spec("this").origin).read_text()
    encoded = re.search(r's = """(.*?)"""', source, re.S).group(1)
    return [line for line in codecs.decode(encoded, "rot13").splitlines() if line.strip()]


def training_stream(lines: Sequence[str], repeats: int, seed: int) -> str:
    """The training text: `repeats` seeded shuffles of `lines`, each line followed by EOS.

    Internal helper: no lesson calls it.
    """
    generator = torch.Generator().manual_seed(seed)
    order = [i for _ in range(repeats) for i in torch.randperm(len(lines), generator=generator).tolist()]
    return "".join(lines[i] + EOS for i in order)


# ----- the tokenizer ---------------------------------------------------------------------------
def train_tokenizer(lines: Sequence[str], vocab_size: int = 384) -> "Tokenizer":
    """Train a byte-level BPE tokenizer on `lines`; EOS is its one special token (id 0).

    Internal helper: no lesson calls it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(lines, trainer)
    return tokenizer


# ----- the model -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LMConfig:
    """The shape of the model."""

    vocab_size: int = 384
    dim: int = 128
    layers: int = 2
    heads: int = 4
    max_context: int = MAX_CONTEXT


class KVCache:
    """Keys and values of every layer for up to `slots` sequences of up to `max_context` positions.

    A sequence owns one slot (an index) from its prefill to its last token; one decoding step
    writes one position per sequence.
    Introduced in 13_language_model.
    """

    def __init__(self, config: LMConfig, slots: int) -> None:
        shape = (config.layers, slots, config.heads, config.max_context, config.dim // config.heads)
        self.keys = torch.zeros(shape)
        self.values = torch.zeros(shape)
        self.slots = slots
        self.free = list(range(slots - 1, -1, -1))

    def take(self) -> int:
        """A free slot; raises RuntimeError when every slot is in use."""
        if not self.free:
            raise RuntimeError(f"all {self.slots} KV-cache slots are in use: finish a sequence first")
        return self.free.pop()

    def give_back(self, slot: int) -> None:
        """Free a slot for the next sequence."""
        if slot not in self.free:
            self.free.append(slot)

    def megabytes(self) -> float:
        """Memory of the keys and values, in MB."""
        return 2 * self.keys.numel() * self.keys.element_size() / 1e6


class Block(nn.Module):
    """One transformer block: pre-norm causal self-attention, then a pre-norm MLP, each with a residual."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.norm1 = nn.LayerNorm(config.dim)
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.proj = nn.Linear(config.dim, config.dim)
        self.norm2 = nn.LayerNorm(config.dim)
        self.mlp = nn.Sequential(nn.Linear(config.dim, 4 * config.dim), nn.GELU(), nn.Linear(4 * config.dim, config.dim))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None,
                slots: torch.Tensor | None) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(dim, dim=2)
        q, k, v = (t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2) for t in (q, k, v))
        if cache is None:   # the whole sequence at once (training, or recomputing the prefix)
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:               # write this step's keys and values, attend over everything the slot holds
            keys, values = cache
            keys[slots[:, None], :, positions] = k.transpose(1, 2)
            values[slots[:, None], :, positions] = v.transpose(1, 2)
            seen = int(positions.max()) + 1
            allowed = torch.arange(seen)[None, None, None, :] <= positions[:, None, :, None]
            attended = F.scaled_dot_product_attention(q, keys[slots, :, :seen], values[slots, :, :seen],
                                                      attn_mask=allowed)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    """A decoder-only transformer: token ids in, next-token logits out.

    `forward(ids)` reads whole sequences (training, recomputing). With a KVCache,
    `forward(ids, positions, cache, slots)` reads only the new tokens of each slot's sequence.
    Internal helper: no lesson calls it.
    """

    def __init__(self, config: LMConfig = LMConfig()) -> None:
        super().__init__()
        self.config = config
        self.tokens = nn.Embedding(config.vocab_size, config.dim)
        self.positions = nn.Embedding(config.max_context, config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.head.weight = self.tokens.weight   # tied: the same table reads and writes tokens
        for table in (self.tokens, self.positions):   # small, as GPT-2 starts: logits near 0, loss near ln(vocab)
            nn.init.normal_(table.weight, std=0.02)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor | None = None, cache: KVCache | None = None,
                slots: torch.Tensor | None = None) -> torch.Tensor:
        if positions is None:
            positions = torch.arange(ids.shape[1]).expand_as(ids)
        x = self.tokens(ids) + self.positions(positions)
        for layer, block in enumerate(self.blocks):
            x = block(x, positions, None if cache is None else (cache.keys[layer], cache.values[layer]), slots)
        return self.head(self.norm(x))


# ----- training --------------------------------------------------------------------------------
@dataclass
class TrainedLM:
    """A trained language model, its tokenizer, and its training loss at every step (empty when loaded)."""

    model: TinyLM
    tokenizer: "Tokenizer"
    losses: list[float]

    @property
    def loss(self) -> float:
        """The last step's training loss (nan for a model loaded from the shipped files)."""
        return self.losses[-1] if self.losses else float("nan")


def train_language_model(seed: int = 0, steps: int = 300, context: int = 64, batch_size: int = 16) -> TrainedLM:
    """Train the tokenizer, then the model, on the Zen of Python; seconds on one CPU core.

    Lessons load the weights this made (load_language_model); lesson 13 trains it to show how.
    Introduced in 13_language_model.
    """
    from .models import set_seed, single_thread

    lines = zen_of_python()
    tokenizer = train_tokenizer(lines)
    with single_thread():
        set_seed(seed)
        stream = torch.tensor(tokenizer.encode(training_stream(lines, repeats=8, seed=seed)).ids)
        model = TinyLM(LMConfig(vocab_size=tokenizer.get_vocab_size()))
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        losses = []
        for _ in range(steps):
            starts = torch.randint(0, len(stream) - context - 1, (batch_size,), generator=generator)
            window = torch.stack([stream[s:s + context + 1] for s in starts.tolist()])
            loss = F.cross_entropy(model(window[:, :-1]).flatten(0, 1), window[:, 1:].flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
    return TrainedLM(model, tokenizer, losses)


def load_language_model(seed: int = 0, steps: int = 300) -> TrainedLM:
    """The model that train_language_model(seed, steps) trained, and its tokenizer, from the files the course ships.

    Introduced in 13_language_model.
    """
    from .models import weights_file

    path = weights_file("zen_lm", seed, steps)
    if not path.is_file():
        raise ValueError(f"the course ships no language model for seed={seed}, steps={steps}; "
                         f"train one yourself with train_language_model(seed={seed}, steps={steps})")
    tokenizer, model = _load(TOKENIZER_FILE, path)
    return TrainedLM(model, tokenizer, [])


def served_model(folder: Path, weights: str = "zen_lm.pt", slots: int = 8) -> tuple["Tokenizer", "Decoder"]:
    """The tokenizer and a Decoder with `slots` KV-cache slots, from a served model's folder (tokenizer.json, weights).

    What a server's model.py or handler calls at load time. Introduced in ex09_streaming_generator.
    """
    torch.set_num_threads(1)   # one thread per model instance: a server runs several side by side
    tokenizer, model = _load(Path(folder) / "tokenizer.json", Path(folder) / weights)
    return tokenizer, Decoder(model, slots)


def _load(tokenizer_file: Path, weights_file: Path) -> tuple["Tokenizer", TinyLM]:
    """A tokenizer.json and the TinyLM weights that go with it (tensors only: no code is unpickled)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    model = TinyLM(LMConfig(vocab_size=tokenizer.get_vocab_size()))
    model.load_state_dict(torch.load(weights_file, weights_only=True))
    return tokenizer, model.eval()


# ----- decoding --------------------------------------------------------------------------------
def next_token(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> int:
    """Greedy (temperature 0: the most likely token) or sampled (softmax(logits / temperature)).

    Internal helper: no lesson calls it.
    """
    if temperature <= 0:
        return int(logits.argmax())
    probabilities = torch.softmax(logits.double() / temperature, dim=-1)
    return int(torch.multinomial(probabilities, 1, generator=generator))


# A request's options, and their values when the client leaves one out.
DEFAULTS = {"max_tokens": 32, "temperature": 0.0, "seed": 0, "ignore_eos": False}
MIN_TEMPERATURE = 0.01   # the smallest temperature above 0 a server samples at


@dataclass(frozen=True)
class Limits:
    """What a server accepts in one generation request; check() turns a request into prompt ids and options, or says why not.

    Servers cap the prompt and the output: the KV cache and the time per request grow with both,
    and one client asking for a million tokens must not hold a slot for minutes.
    Introduced in 14_streaming.
    """

    max_prompt_tokens: int = 128
    max_tokens: int = 128
    max_temperature: float = 2.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> "Limits":
        """The limits a served model's settings name (max_prompt_tokens, max_tokens_limit; 128 each when unset)."""
        return cls(max_prompt_tokens=int(settings.get("max_prompt_tokens", 128)),
                   max_tokens=int(settings.get("max_tokens_limit", 128)))

    def check(self, tokenizer: "Tokenizer", prompt: object,
              options: Mapping[str, object] | None = None) -> tuple[list[int], dict[str, object]]:
        """(the prompt's token ids, every option with DEFAULTS filled in); ValueError naming what is wrong and what is allowed."""
        unknown = sorted(set(options or {}) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; the options are {sorted(DEFAULTS)}")
        values = {**DEFAULTS, **(options or {})}
        ids = self._prompt_ids(tokenizer, prompt)
        max_tokens, temperature, seed = values["max_tokens"], values["temperature"], values["seed"]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= self.max_tokens:
            raise ValueError(f"max_tokens is {max_tokens!r}; ask for an integer from 1 to {self.max_tokens}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not 0.0 <= temperature <= self.max_temperature:   # also refuses NaN
            raise ValueError(f"temperature is {temperature!r}; use a number from 0 (greedy) to {self.max_temperature}")
        if 0.0 < temperature < MIN_TEMPERATURE:   # logits / 1e-310 overflow: softmax gives NaN and sampling fails
            raise ValueError(f"temperature is {temperature!r}; use 0 for greedy decoding, or at least {MIN_TEMPERATURE}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"seed is {seed!r}; use an integer from 0 to 2**63 - 1")
        if not isinstance(values["ignore_eos"], bool):
            raise ValueError(f"ignore_eos is {values['ignore_eos']!r}; use true or false")
        return ids, {**values, "temperature": float(temperature)}

    def _prompt_ids(self, tokenizer: "Tokenizer", prompt: object) -> list[int]:
        if isinstance(prompt, bytes):
            try:
                prompt = prompt.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"the prompt is not UTF-8 ({error.reason} at byte {error.start}); "
                                 "send it as UTF-8 text") from None
        if not isinstance(prompt, str):
            raise ValueError(f"the prompt must be text, got {type(prompt).__name__}")
        ids = tokenizer.encode(prompt).ids
        if not ids:
            raise ValueError("the prompt is empty: send at least one character")
        if len(ids) > self.max_prompt_tokens:
            raise ValueError(f"the prompt is {len(ids)} tokens; this server accepts at most "
                             f"{self.max_prompt_tokens}: shorten it")
        return ids


class TextStream:
    """Turns generated token ids into text pieces for a stream, never splitting a UTF-8 character.

    Byte-level BPE may end a token inside a multi-byte character; push() holds those bytes back
    until the character is complete; flush() gives what is left when the sequence ends.
    Introduced in 14_streaming.
    """

    def __init__(self, tokenizer: "Tokenizer") -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.sent = 0

    def push(self, token: int) -> str:
        """Add one token; return the new text it completes ("" while a character is incomplete)."""
        self.ids.append(token)
        return self._unsent(hold_incomplete=True)

    def flush(self) -> str:
        """The text not sent yet, complete or not: call it when the sequence ends (it may end inside a character)."""
        return self._unsent(hold_incomplete=False)

    def _unsent(self, hold_incomplete: bool) -> str:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        if hold_incomplete and text.endswith("\ufffd"):   # an incomplete UTF-8 character: wait for its next bytes
            return ""
        piece, self.sent = text[self.sent:], len(text)
        return piece


# ----- many sequences at once ------------------------------------------------------------------
@dataclass
class Generation:
    """One request being generated: its slot in the KV cache, its tokens so far, and when it stops."""

    slot: int
    ids: list[int]
    max_tokens: int
    temperature: float
    generator: torch.Generator
    stop_at_eos: bool
    prompt_length: int
    filled: int = 0              # positions of `ids` already in the KV cache
    finish_reason: str = ""      # "length", "stop" (EOS) or "cancelled" once it is done

    @property
    def generated(self) -> list[int]:
        return self.ids[self.prompt_length:]


class Decoder:
    """Decodes many sequences together, one token each per step(), whatever position each has reached.

    A new sequence's first step reads its whole prompt (the prefill); every later step reads one
    token per sequence, all of them in one batched forward pass over their KV-cache slots. Sequences
    may join and leave between any two steps: that is continuous batching. Serving code calls
    add(), step() and finish(); the lessons show it in-process first.
    Introduced in 13_language_model.
    """

    def __init__(self, model: TinyLM, slots: int = 16) -> None:
        self.model = model
        self.cache = KVCache(model.config, slots)

    def add(self, prompt_ids: Sequence[int], max_tokens: int, temperature: float = 0.0, seed: int = 0,
            stop_at_eos: bool = True) -> Generation:
        """Start a sequence (it takes a KV-cache slot); ValueError when it cannot fit the model's context."""
        if not prompt_ids:
            raise ValueError("the prompt has no tokens: give at least one character")
        if max_tokens < 1:
            raise ValueError(f"max_tokens is {max_tokens}: ask for at least 1 token")
        if len(prompt_ids) + max_tokens > self.model.config.max_context:
            raise ValueError(f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceeds the model's "
                             f"context of {self.model.config.max_context} positions")
        return Generation(self.cache.take(), list(prompt_ids), max_tokens, temperature,
                          torch.Generator().manual_seed(seed), stop_at_eos, len(prompt_ids))

    @torch.inference_mode()
    def step(self, sequences: Sequence[Generation]) -> list[int | None]:
        """One new token for each sequence (None where it just finished at EOS); sets finish_reason when done."""
        logits: dict[int, torch.Tensor] = {}
        running = [s for s in sequences if s.filled]
        for sequence in sequences:
            if not sequence.filled:   # prefill: the whole prompt in one pass
                ids = torch.tensor([sequence.ids])
                positions = torch.arange(len(sequence.ids))[None, :]
                logits[id(sequence)] = self.model(ids, positions, self.cache, torch.tensor([sequence.slot]))[0, -1]
        if running:                   # decode: one token per running sequence, one batched pass
            ids = torch.tensor([[s.ids[-1]] for s in running])
            positions = torch.tensor([[len(s.ids) - 1] for s in running])
            slots = torch.tensor([s.slot for s in running])
            for sequence, row in zip(running, self.model(ids, positions, self.cache, slots)[:, -1]):
                logits[id(sequence)] = row
        for sequence in sequences:
            sequence.filled = len(sequence.ids)
        return [self.choose(sequence, logits[id(sequence)]) for sequence in sequences]

    @staticmethod
    def choose(sequence: Generation, logits: torch.Tensor) -> int | None:
        """Pick the sequence's next token from its logits and append it; None (and finish_reason "stop") at EOS."""
        token = next_token(logits, sequence.temperature, sequence.generator)
        if token == 0 and sequence.stop_at_eos:
            sequence.finish_reason = "stop"
            return None
        sequence.ids.append(token)
        if len(sequence.generated) >= sequence.max_tokens:
            sequence.finish_reason = "length"
        return token

    def finish(self, sequence: Generation, reason: str = "") -> None:
        """Free the sequence's slot (call it when it is done, cancelled or failed)."""
        sequence.finish_reason = sequence.finish_reason or reason
        self.cache.give_back(sequence.slot)


@torch.inference_mode()
def generate_ids(model: TinyLM, prompt_ids: Sequence[int], max_tokens: int, temperature: float = 0.0,
                 seed: int = 0, stop_at_eos: bool = True, use_cache: bool = True) -> Iterator[int]:
    """Yield generated token ids one by one: with the KV cache (one new position a step) or recomputing the prefix.

    Stops after `max_tokens`, or at EOS (id 0, not yielded) when `stop_at_eos`.
    Introduced in 13_language_model.
    """
    decoder = Decoder(model, slots=1)
    generation = decoder.add(prompt_ids, max_tokens, temperature, seed, stop_at_eos)
    while not generation.finish_reason:
        if use_cache:
            token = decoder.step([generation])[0]
        else:   # the whole sequence again, every step
            logits = model(torch.tensor([generation.ids]))[0, -1]
            token = decoder.choose(generation, logits)
        if token is not None:
            yield token


def complete(trained: TrainedLM, prompt: str, max_tokens: int = 32, temperature: float = 0.0, seed: int = 0,
             stop_at_eos: bool = True) -> str:
    """The text the model writes after `prompt` (greedy unless temperature > 0).

    Introduced in 13_language_model.
    """
    ids = list(generate_ids(trained.model, trained.tokenizer.encode(prompt).ids, max_tokens, temperature, seed,
                            stop_at_eos))
    return trained.tokenizer.decode(ids, skip_special_tokens=False)
