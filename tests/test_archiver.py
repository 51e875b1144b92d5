import pytest

from course_utils.archiver import archive_contents, archive_model, handler_file


def test_archive_holds_model_handler_and_extra_files(churn_files, tmp_path):
    archive = archive_model("churn", churn_files["model"], churn_files["handler"], tmp_path,
                            extra_files=[churn_files["base"], churn_files["labels"]], version="2.0")
    names, manifest = archive_contents(archive.path)
    assert names == ["MAR-INF/MANIFEST.json", "batch_safe.py", "churn.pt", "churn_handler.py", "index_to_name.json"]
    assert manifest["model"]["modelVersion"] == "2.0"
    assert archive.command[0] == "torch-model-archiver" and "--extra-files" in archive.command


def test_missing_input_file_is_named_before_the_archiver_runs(churn_files, tmp_path):
    with pytest.raises(FileNotFoundError, match="serialized_file .*nope.pt does not exist"):
        archive_model("churn", tmp_path / "nope.pt", churn_files["handler"], tmp_path)


def test_unknown_course_handler_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match="churn_handler"):
        handler_file("chrun_handler")
