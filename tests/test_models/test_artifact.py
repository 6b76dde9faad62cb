import pytest
import torch

from eowatch.models.artifact import (
    ArtifactError,
    ModelMetadata,
    build_model,
    load_artifact,
    save_artifact,
)

BANDS = ("B02", "B03", "B04", "B08")


def metadata(**overrides):
    fields = dict(version="test-1", feed="sentinel2", band_names=BANDS,
                  class_names=("wheat", "maize", "grass"), band_mean=(0.1, 0.1, 0.1, 0.3),
                  band_std=(0.05, 0.05, 0.05, 0.1),
                  architecture=dict(n_bands=4, n_classes=3, hidden_size=16, num_layers=2,
                                    dropout=0.1, stop_bias_init=-6.0),
                  alpha=0.8, epsilon=10.0, season_start="01-01",
                  training={"data_sha256": "ab" * 32}, metrics={"accuracy": 0.9})
    fields.update(overrides)
    return ModelMetadata(**fields)


@pytest.fixture
def artifact(tmp_path):
    torch.manual_seed(3)
    meta = metadata()
    model = build_model(meta)
    return save_artifact(tmp_path / "model.pt", model, meta), model, meta


def test_round_trip_gives_same_outputs_and_metadata(artifact):
    path, model, meta = artifact
    loaded = load_artifact(path)
    assert loaded.metadata == meta
    x, days = torch.rand(2, 6, 4), torch.arange(6.0).expand(2, 6) * 10
    model.eval()
    with torch.no_grad():
        for a, b in zip(model(x, days), loaded.model(x, days), strict=True):
            assert torch.equal(a, b)


def test_corrupted_weights_are_refused(artifact):
    path, _, _ = artifact
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["class_head.bias"][0] += 1.0
    torch.save(blob, path)
    with pytest.raises(ArtifactError, match="integrity"):
        load_artifact(path)


def test_edited_metadata_is_refused(artifact):
    path, _, _ = artifact
    blob = torch.load(path, weights_only=True)
    blob["metadata"] = blob["metadata"].replace('"maize"', '"sorghum"')
    torch.save(blob, path)
    with pytest.raises(ArtifactError, match="integrity"):
        load_artifact(path)


def test_truncated_file_is_refused_with_the_fix(artifact):
    path, _, _ = artifact
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ArtifactError, match="truncated"):
        load_artifact(path)


def test_foreign_file_and_missing_file_are_refused(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ArtifactError, match="not an eowatch model"):
        load_artifact(other)
    with pytest.raises(ArtifactError, match="not found"):
        load_artifact(tmp_path / "absent.pt")


def test_newer_format_version_is_refused(artifact):
    path, _, _ = artifact
    blob = torch.load(path, weights_only=True)
    blob["format_version"] = 99
    torch.save(blob, path)
    with pytest.raises(ArtifactError, match="upgrade eowatch"):
        load_artifact(path)


def test_band_mismatch_is_refused_with_a_clear_message(artifact):
    loaded = load_artifact(artifact[0])
    loaded.check_bands("sentinel2", BANDS)
    with pytest.raises(ArtifactError, match=r"missing \['B08'\]"):
        loaded.check_bands("sentinel2", ("B02", "B03", "B04"))
    with pytest.raises(ArtifactError, match="another order"):
        loaded.check_bands("sentinel2", ("B03", "B02", "B04", "B08"))
