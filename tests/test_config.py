from pathlib import Path

import pytest

from oreal.config_io import ConfigError, load_config, parse_scalar
from oreal.train.config import OrealConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_defaults_use_the_embedded_model_and_oreal_release() -> None:
    config = load_config(OrealConfig)
    assert config.model.name_or_path == "embedded"
    assert config.algorithm.name == "oreal"
    params = config.algorithm.resolved
    assert params.form == "release"
    assert params.kl_coef == pytest.approx(0.01)  # OREAL's own default, not a config default


def test_dotted_overrides_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("algorithm:\n  name: grpo\noptim:\n  lr: 1.0e-5\n")
    config = load_config(
        OrealConfig,
        path,
        ["optim.lr=2e-6", "rollout.num_rollouts=4", 'rollout.stop=["\\n\\n"]', "train.plot=false"],
    )
    assert config.algorithm.name == "grpo"
    assert config.optim.lr == pytest.approx(2e-6)
    assert config.rollout.num_rollouts == 4
    assert config.rollout.stop == ["\n\n"]
    assert config.train.plot is False


@pytest.mark.parametrize(
    ("override", "expected_hint"),
    [
        ("optim.learning_rate=1e-5", "closest valid"),
        ("optim.lrr=1e-5", "did you mean 'optim.lr'"),
        ("algorthm.name=grpo", "did you mean 'algorithm'"),
    ],
)
def test_unknown_key_names_the_closest_valid_one(override: str, expected_hint: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(OrealConfig, None, [override])
    message = str(error.value)
    assert "unknown key" in message
    if expected_hint != "closest valid":
        assert expected_hint in message
    else:
        assert "optim." in message


def test_bad_values_and_names_are_rejected() -> None:
    with pytest.raises(ConfigError, match="num_rollouts"):
        load_config(OrealConfig, None, ["rollout.num_rollouts=1"])
    with pytest.raises(ConfigError, match="grpo"):
        load_config(OrealConfig, None, ["algorithm.name=grp"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(OrealConfig, None, ["optim.lr"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(OrealConfig, "does/not/exist.yaml")


def test_algorithm_params_are_validated_against_the_method() -> None:
    config = load_config(OrealConfig, None, ["algorithm.name=grpo", "algorithm.params.eps=1e-8"])
    assert config.algorithm.resolved.eps == pytest.approx(1e-8)
    assert config.record()["algorithm"]["params"]["clip_eps_high"] == 0.2  # defaults recorded
    with pytest.raises(ConfigError, match="did you mean 'kl_coef'"):
        load_config(OrealConfig, None, ["algorithm.name=grpo", "algorithm.params.kl_coeff=0.1"])
    with pytest.raises(ConfigError, match="grpo takes"):  # OREAL's knob is not GRPO's
        load_config(OrealConfig, None, ["algorithm.name=grpo", "algorithm.params.form=paper"])
    switched = ["algorithm.name=grpo", "algorithm.params={}"]  # from a preset's OREAL params
    assert load_config(OrealConfig, None, ["algorithm.params.form=paper", *switched])
    with pytest.raises(ConfigError, match=r"algorithm\.params\.kl_coef"):  # the old flat key
        load_config(OrealConfig, None, ["algorithm.kl_coef=0.1"])
    with pytest.raises(ConfigError, match=r"algorithm\.params\.form"):
        load_config(OrealConfig, None, ["algorithm.oreal_form=paper"])


def test_invalid_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(OrealConfig, path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(OrealConfig, path)


def test_scalar_parsing() -> None:
    assert parse_scalar("1e-5") == pytest.approx(1e-5)
    assert parse_scalar("3") == 3
    assert parse_scalar("true") is True
    assert parse_scalar("null") is None
    assert parse_scalar("grpo") == "grpo"


@pytest.mark.parametrize("preset", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_preset_validates(preset: Path) -> None:
    load_config(OrealConfig, preset)


def test_demo_grpo_preset_is_the_demo_with_grpo() -> None:
    """The two demo presets differ only in the algorithm (the GRPO column of the ablation)."""
    from oreal.configs import resolve_config_path

    demo = load_config(OrealConfig, resolve_config_path("demo"), []).model_dump()
    grpo = load_config(OrealConfig, resolve_config_path("demo_grpo"), []).model_dump()
    assert grpo["algorithm"].pop("name") == "grpo" and demo["algorithm"].pop("name") == "oreal"
    assert grpo == demo, "keep configs/demo_grpo.yaml in sync with configs/demo.yaml"


def test_the_configuration_reference_is_current() -> None:
    """docs/config.md is generated from the schema; regenerate it when a field changes:
    python -m oreal.train.config_doc > docs/config.md"""
    from oreal.train.config_doc import config_reference

    page = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert page.read_text() == config_reference()
