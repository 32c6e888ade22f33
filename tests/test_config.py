"""The configuration schema: the shipped model config, strict loading, flags from the fields."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from model.config import ConfigError, ServiceConfig, load_config

MODEL_CONFIG = Path(__file__).resolve().parents[1] / "handler" / "model-config.yaml"


def test_the_shipped_model_config_is_the_schema_defaults():
    assert load_config(yaml.safe_load(MODEL_CONFIG.read_text())) == ServiceConfig()


def test_a_nested_block_sets_each_section():
    config = load_config(
        {
            "deepfake": {
                "sampling": {"interval": 10, "num_frames": None},
                "detector": {"retry_with": None, "grey": False},
                "verdict": {"aggregation": "face_max", "threshold": 1},
                "engine": {"inference_path": "torch-fp32", "torch_threads": 2},
                "limits": {"max_duration_s": None, "max_pixels": 1000},
            }
        }
    )
    assert config.sampling.interval == 10 and config.detector.retry_with is None
    assert config.verdict.threshold == 1.0 and isinstance(config.verdict.threshold, float)
    assert config.engine.torch_threads == 2 and config.limits.max_duration_s is None
    assert config.explanations == ServiceConfig().explanations  # untouched sections: defaults


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"intervall": 10}, r"unknown key\(s\) in deepfake: \['intervall'\]"),
        ({"sampling": {"intervall": 10}}, r"in deepfake\.sampling: \['intervall'\]"),
        ({"sampling": {"interval": "10"}}, r"deepfake\.sampling\.interval must be int"),
        ({"detector": {"grey": "yes"}}, r"deepfake\.detector\.grey must be bool"),
        ({"engine": {"crops_per_batch": True}}, r"crops_per_batch must be int"),
        ({"engine": {"inference_path": "openvino-int4"}}, "inference path must be auto"),
        ({"engine": {"torch_threads": "many"}}, "torch_threads must be auto or at least 1"),
        ({"verdict": {"threshold": 2}}, r"deepfake\.verdict: threshold must lie in \[0, 1\]"),
        ({"verdict": 0.5}, r"deepfake\.verdict must be a mapping"),
        ({"explanations": {"faces": 9}}, "1 <= faces <= max_faces"),
    ],
)
def test_a_wrong_key_or_value_is_an_error_naming_it(block, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"deepfake": block})


def test_the_documented_tree_is_the_schemas_defaults():
    """docs/configuration.md prints every section with its defaults: it must stay true."""
    import dataclasses
    import re
    from pathlib import Path

    import yaml

    from model.config import ServiceConfig

    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    block = re.search(r"```yaml\n(deepfake:\n.*?)```", text, re.DOTALL).group(1)
    documented = yaml.safe_load(block)["deepfake"]
    defaults = dataclasses.asdict(ServiceConfig())
    assert documented == defaults


def test_the_served_threshold_is_the_models_unless_the_server_sets_one():
    from model.verdict import VerdictConfig

    rule = VerdictConfig()
    assert rule.threshold is None
    with pytest.raises(ValueError, match="with_model_threshold"):
        rule.label(0.7)
    fitted = rule.with_model_threshold(0.57)
    assert fitted.threshold == 0.57 and fitted.label(0.66) == "uncertain"
    assert fitted.label(0.67) == "fake" and fitted.label(0.46) == "real"
    operator = VerdictConfig(threshold=0.8)
    assert operator.with_model_threshold(0.57).threshold == 0.8
