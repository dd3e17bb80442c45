"""ExperimentConfig: defaults, YAML + overrides, error messages, bounds, cross-field rules, shipped files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from deca_ray.config import (
    BlocksConfig,
    ExperimentConfig,
    config_from_dict,
    dump_config,
    load_config,
)
from deca_ray.errors import ConfigError

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"


def experiment_config_files(deployments: Path) -> list[Path]:
    """Every ``*.yaml`` under ``deployments`` except KubeRay manifests and the Ray runtime env."""
    files = []
    for path in sorted(deployments.rglob("*.yaml")):
        relative = path.relative_to(deployments)
        if relative.parts[0] == "kuberay" or relative == Path("runtime_env.yaml"):
            continue
        files.append(path)
    return files


SHIPPED_CONFIGS = experiment_config_files(DEPLOYMENTS)


def _config_error(overrides: list[str], path: Path | None = None) -> str:
    """The message of the ConfigError that loading must raise."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return str(caught.value)


def _assert_names_field(message: str, field_path: str) -> None:
    # _describe writes one "  <dotted.path>: <what is wrong>" line per error
    assert re.search(rf"^\s*{re.escape(field_path)}: ", message, re.MULTILINE), message


def _write(tmp_path: Path, text: str, name: str = "experiment.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- defaults, fingerprint


def test_defaults_validate_and_equal_an_empty_load():
    # Prepare / Execute
    default = ExperimentConfig()
    loaded = load_config()
    from_empty_dict = config_from_dict({})

    # Assert
    assert loaded == default
    assert from_empty_dict == default
    assert default.num_clients == 4 and default.topology.type == "ring"


def test_fingerprint_is_stable_across_calls_and_equal_configs():
    # Prepare
    first = load_config(None, ["algorithm.lr=1e-3", "num_clients=6"])
    second = load_config(None, ["num_clients=6", "algorithm.lr=0.001"])

    # Execute
    fingerprints = {first.fingerprint(), first.fingerprint(), second.fingerprint()}

    # Assert
    assert len(fingerprints) == 1
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprints.pop())


@pytest.mark.parametrize(
    "override",
    [
        "seed=1",
        "num_clients=6",
        "algorithm.lr=1e-3",
        "algorithm.inner_steps=2",
        "algorithm.blocks.layers_per_block=3",
        "model.name=tiny-llama",
        "data.max_tokens=64",
        "partition.alpha=1.0",
        "topology.type=complete",
    ],
)
def test_fingerprint_changes_with_training_relevant_fields(override):
    # Prepare
    baseline = ExperimentConfig().fingerprint()

    # Execute
    changed = load_config(None, [override]).fingerprint()

    # Assert
    assert changed != baseline


@pytest.mark.parametrize(
    "override",
    [
        "tracking.enabled=false",
        "tracking.experiment=other",
        "tracking.run_name=try-2",
        "tracking.output_dir=/tmp/elsewhere",
        "runtime.backend=local",
        "runtime.cpus_per_client=2",
        "runtime.address=ray://head:10001",
        "runtime.step_timeout_s=5",
    ],
)
def test_fingerprint_ignores_tracking_and_runtime_fields(override):
    # Prepare
    baseline = ExperimentConfig().fingerprint()

    # Execute
    changed_config = load_config(None, [override])

    # Assert
    assert changed_config != ExperimentConfig()  # the override did change something
    assert changed_config.fingerprint() == baseline


# --------------------------------------------------------------------------- YAML files and overrides


def test_yaml_file_sets_fields_and_leaves_the_rest_default(tmp_path):
    # Prepare
    path = _write(
        tmp_path,
        "name: from-file\n"
        "num_clients: 6\n"
        "topology:\n  type: torus\n  torus_shape: [2, 3]\n"
        "algorithm:\n  lr: 0.001\n  blocks:\n    layers_per_block: 1\n",
    )

    # Execute
    config = load_config(path)

    # Assert
    assert config.name == "from-file"
    assert config.num_clients == 6
    assert config.topology.torus_shape == (2, 3)
    assert config.algorithm.lr == 0.001
    assert config.algorithm.blocks.layers_per_block == 1
    assert config.algorithm.inner_steps == ExperimentConfig().algorithm.inner_steps
    assert config.data == ExperimentConfig().data


def test_overrides_win_over_the_file_and_keep_sibling_keys(tmp_path):
    # Prepare
    path = _write(tmp_path, "algorithm:\n  lr: 0.001\n  inner_steps: 2\n")

    # Execute
    config = load_config(path, ["algorithm.lr=0.01"])

    # Assert
    assert config.algorithm.lr == 0.01
    assert config.algorithm.inner_steps == 2


@pytest.mark.parametrize(
    ("overrides", "read", "expected"),
    [
        (["num_clients=8"], lambda c: c.num_clients, 8),
        (["algorithm.lr=1e-4"], lambda c: c.algorithm.lr, 1e-4),  # YAML 1.1 reads "1e-4" as a string
        (["algorithm.lr=0.25"], lambda c: c.algorithm.lr, 0.25),
        (["data.test_size=0.2"], lambda c: c.data.test_size, 0.2),
        (["data.test_size=20"], lambda c: c.data.test_size, 20),
        (["tracking.enabled=false"], lambda c: c.tracking.enabled, False),
        (["algorithm.blocks.include_lm_head=true"], lambda c: c.algorithm.blocks.include_lm_head, True),
        (
            ["algorithm.blocks.order=fixed", "algorithm.blocks.fixed_order=[2,0]"],
            lambda c: c.algorithm.blocks.fixed_order,
            [2, 0],
        ),
        (
            ["topology.type=custom", "topology.edges=[[0,1],[1,2],[2,3]]"],
            lambda c: c.topology.edges,
            [(0, 1), (1, 2), (2, 3)],
        ),
        (["data.instruction=a=b"], lambda c: c.data.instruction, "a=b"),  # only the first '=' separates key and value
        (["tracking.run_name=2024"], lambda c: c.tracking.run_name, "2024"),  # YAML int into a str field
        (["seed=1", "seed=2"], lambda c: c.seed, 2),  # the last override wins
    ],
)
def test_override_values_are_parsed_as_yaml(overrides, read, expected):
    # Prepare / Execute
    config = load_config(None, overrides)

    # Assert
    assert read(config) == expected
    assert type(read(config)) is type(expected)


def test_override_creates_nested_sections_and_keeps_their_defaults():
    # Prepare / Execute
    config = load_config(None, ["model.tiny.num_layers=2"])

    # Assert
    assert config.model.tiny.num_layers == 2
    assert config.model.tiny.hidden_size == ExperimentConfig().model.tiny.hidden_size
    assert config.model.name == ExperimentConfig().model.name


def test_override_of_a_section_missing_from_the_file(tmp_path):
    # Prepare
    path = _write(tmp_path, "name: only-a-name\n")

    # Execute
    config = load_config(path, ["checkpoint.enabled=true", "checkpoint.every_steps=10"])

    # Assert
    assert config.name == "only-a-name"
    assert config.checkpoint.enabled is True
    assert config.checkpoint.every_steps == 10


def test_empty_override_value_sets_none(tmp_path):
    # Prepare
    path = _write(tmp_path, "data:\n  max_train_examples: 100\n")

    # Execute
    config = load_config(path, ["data.max_train_examples="])

    # Assert
    assert config.data.max_train_examples is None


def test_yaml_int_keys_become_label_word_strings(tmp_path):
    # Prepare
    path = _write(tmp_path, "data:\n  label_words:\n    0: World\n    1: Sports\n")

    # Execute
    config = load_config(path)

    # Assert
    assert config.data.label_words == {"0": "World", "1": "Sports"}


# --------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("override", "field_path", "suggestion"),
    [
        ("num_client=3", "num_client", "num_clients"),
        ("algorithm.lrr=1e-3", "algorithm.lrr", "lr"),
        ("topology.typ=ring", "topology.typ", "type"),
        ("model.tiny.hiden_size=32", "model.tiny.hiden_size", "hidden_size"),
        ("algorithm.blocks.layer_per_block=1", "algorithm.blocks.layer_per_block", "layers_per_block"),
    ],
)
def test_unknown_key_names_its_path_and_the_closest_key(override, field_path, suggestion):
    # Prepare / Execute
    message = _config_error([override])

    # Assert
    assert f"{field_path}: unknown key" in message, message
    assert f"did you mean {suggestion!r}" in message, message


def test_unknown_key_in_a_yaml_file_is_reported_like_an_override(tmp_path):
    # Prepare
    path = _write(tmp_path, "algoritm:\n  lr: 0.1\n")

    # Execute
    message = _config_error([], path)

    # Assert
    assert "algoritm: unknown key" in message
    assert "did you mean 'algorithm'" in message


@pytest.mark.parametrize(
    ("override", "model"),
    [
        ("zzqqxx=1", ExperimentConfig),
        ("algorithm.blocks.zzqqxx=1", BlocksConfig),
    ],
)
def test_unknown_key_without_a_close_match_lists_the_valid_keys(override, model):
    # Prepare
    valid_keys = sorted(model.model_fields)

    # Execute
    message = _config_error([override])

    # Assert
    assert "did you mean" not in message
    assert f"valid keys here: {', '.join(valid_keys)}" in message, message


# --------------------------------------------------------------------------- types and bounds


@pytest.mark.parametrize(
    ("override", "field_path"),
    [
        ("num_clients=abc", "num_clients"),
        ("algorithm.lr=fast", "algorithm.lr"),
        ("topology.type=hexagon", "topology.type"),
        ("algorithm.blocks.fixed_order=[a, b]", "algorithm.blocks.fixed_order.0"),
        ("data=5", "data"),
    ],
)
def test_wrong_type_names_the_field(override, field_path):
    # Prepare / Execute
    message = _config_error([override])

    # Assert
    _assert_names_field(message, field_path)


@pytest.mark.parametrize(
    ("override", "field_path"),
    [
        ("partition.alpha=0", "partition.alpha"),
        ("partition.alpha=-0.5", "partition.alpha"),
        ("num_clients=0", "num_clients"),
        ("algorithm.blocks.layers_per_block=0", "algorithm.blocks.layers_per_block"),
        ("algorithm.lr=0", "algorithm.lr"),
        ("algorithm.lr=-1e-4", "algorithm.lr"),
        ("algorithm.adam_beta1=1", "algorithm.adam_beta1"),
        ("algorithm.adam_beta2=1", "algorithm.adam_beta2"),
        ("algorithm.bma_beta1=1.5", "algorithm.bma_beta1"),
        ("algorithm.bma_beta2=1.01", "algorithm.bma_beta2"),
        ("data.test_size=0", "data.test_size"),
        ("data.test_size=1.5", "data.test_size"),
        ("data.test_size=1.0", "data.test_size"),
    ],
)
def test_out_of_bounds_value_names_the_field(override, field_path):
    # Prepare / Execute
    message = _config_error([override])

    # Assert
    _assert_names_field(message, field_path)


@pytest.mark.parametrize(
    "override",
    [
        "algorithm.bma_beta1=1",  # β1 = 1 disables the correction: allowed
        "algorithm.adam_beta1=0",
        "partition.alpha=1e-6",
        "data.test_size=1",  # an int count, not the fraction 1.0
        "data.test_size=0.5",
        "num_clients=1",
    ],
)
def test_values_on_the_allowed_side_of_a_bound_validate(override):
    # Prepare / Execute
    config = load_config(None, [override])

    # Assert
    assert isinstance(config, ExperimentConfig)


def test_every_invalid_field_is_reported_in_one_error():
    # Prepare / Execute
    message = _config_error(["num_clients=0", "algorithm.lr=0"])

    # Assert
    _assert_names_field(message, "num_clients")
    _assert_names_field(message, "algorithm.lr")


# --------------------------------------------------------------------------- cross-field rules


def test_torus_shape_must_multiply_to_num_clients():
    # Prepare
    overrides = ["num_clients=4", "topology.type=torus", "topology.torus_shape=[2,3]"]

    # Execute
    message = _config_error(overrides)

    # Assert
    assert "topology.torus_shape=2x3" in message
    assert "num_clients=4" in message
    assert load_config(None, [*overrides[:2], "topology.torus_shape=[2,2]"]).topology.torus_shape == (2, 2)


def test_custom_topology_needs_edges():
    # Prepare / Execute
    message = _config_error(["topology.type=custom"])

    # Assert
    assert "topology.edges" in message


@pytest.mark.parametrize("missing_client", [4, -1])
def test_custom_edges_must_name_existing_clients(missing_client):
    # Prepare
    overrides = ["num_clients=4", "topology.type=custom", f"topology.edges=[[0,1],[1,{missing_client}]]"]

    # Execute
    message = _config_error(overrides)

    # Assert
    assert f"client {missing_client}" in message
    assert "num_clients=4" in message


@pytest.mark.parametrize("kind", ["star", "bipartite"])
def test_star_and_bipartite_need_two_clients(kind):
    # Prepare / Execute
    message = _config_error(["num_clients=1", f"topology.type={kind}"])

    # Assert
    assert f"topology.type={kind}" in message
    assert "num_clients >= 2" in message


def test_max_train_examples_must_cover_min_per_client_on_every_client():
    # Prepare: dirichlet needs num_clients * min_per_client = 4 * 3 = 12 examples
    base = ["num_clients=4", "partition.type=dirichlet", "partition.min_per_client=3"]

    # Execute
    message = _config_error([*base, "data.max_train_examples=11"])
    enough = load_config(None, [*base, "data.max_train_examples=12"])

    # Assert
    assert "data.max_train_examples=11" in message
    assert "at least 12" in message
    assert enough.data.max_train_examples == 12


def test_max_train_examples_needs_one_per_client_outside_dirichlet():
    # Prepare
    base = ["num_clients=4", "partition.type=iid", "partition.min_per_client=3"]

    # Execute
    message = _config_error([*base, "data.max_train_examples=3"])
    enough = load_config(None, [*base, "data.max_train_examples=4"])

    # Assert
    assert "at least 4" in message
    assert enough.data.max_train_examples == 4


@pytest.mark.parametrize("fixed_order", [None, "[]"])
def test_fixed_block_order_needs_fixed_order(fixed_order):
    # Prepare
    overrides = ["algorithm.blocks.order=fixed"]
    if fixed_order is not None:
        overrides.append(f"algorithm.blocks.fixed_order={fixed_order}")

    # Execute
    message = _config_error(overrides)

    # Assert
    _assert_names_field(message, "algorithm.blocks")
    assert "fixed_order" in message


def test_tiny_model_heads_must_divide_hidden_size():
    # Prepare / Execute
    message = _config_error(["model.tiny.hidden_size=30", "model.tiny.num_heads=4"])

    # Assert
    _assert_names_field(message, "model.tiny")
    assert "hidden_size" in message


# --------------------------------------------------------------------------- malformed overrides


@pytest.mark.parametrize("override", ["lr", "=3", "  =3", ""])
def test_override_without_a_key_or_equals_sign_is_rejected(override):
    # Prepare / Execute
    message = _config_error([override])

    # Assert
    assert repr(override) in message
    assert "key.path=value" in message


def test_override_below_a_value_set_earlier_is_rejected():
    # Prepare / Execute
    message = _config_error(["seed=3", "seed.x=1"])

    # Assert
    assert "'seed.x=1'" in message
    assert "seed is a value, not a section" in message


def test_override_below_a_value_from_the_file_is_rejected(tmp_path):
    # Prepare
    path = _write(tmp_path, "algorithm:\n  lr: 0.1\n")

    # Execute
    message = _config_error(["algorithm.lr.x=1"], path)

    # Assert
    assert "algorithm.lr is a value, not a section" in message


def test_override_turning_a_value_into_a_section_is_rejected():
    # Prepare / Execute: seed is absent from the raw dict, so the override builds {"seed": {"x": 1}}
    message = _config_error(["seed.x=1"])

    # Assert
    _assert_names_field(message, "seed")


# --------------------------------------------------------------------------- unreadable files


def test_missing_config_file_is_named(tmp_path):
    # Prepare
    path = tmp_path / "nowhere.yaml"

    # Execute
    message = _config_error([], path)

    # Assert
    assert str(path) in message
    assert "does not exist" in message


def test_directory_instead_of_a_file_is_rejected(tmp_path):
    # Prepare / Execute
    message = _config_error([], tmp_path)

    # Assert
    assert str(tmp_path) in message


def test_non_yaml_file_is_named(tmp_path):
    # Prepare
    path = _write(tmp_path, "algorithm: [1, 2\nlr: : :\n", name="broken.yaml")

    # Execute
    message = _config_error([], path)

    # Assert
    assert str(path) in message
    assert "not valid YAML" in message


@pytest.mark.parametrize(("text", "type_name"), [("- 1\n- 2\n", "list"), ("just words\n", "str")])
def test_yaml_that_is_not_a_mapping_is_named(tmp_path, text, type_name):
    # Prepare
    path = _write(tmp_path, text, name="list.yaml")

    # Execute
    message = _config_error([], path)

    # Assert
    assert str(path) in message
    assert f"mapping at the top level, not {type_name}" in message


def test_empty_yaml_file_gives_the_defaults(tmp_path):
    # Prepare
    path = _write(tmp_path, "")

    # Execute
    config = load_config(path)

    # Assert
    assert config == ExperimentConfig()


# --------------------------------------------------------------------------- dump_config


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        [
            "name=round-trip",
            "num_clients=3",
            "model.name=tiny-llama",
            "model.tiny.hidden_size=32",
            "data.test_size=0.2",
            "data.label_words={a: Alpha, b: Beta}",
            "topology.type=custom",
            "topology.edges=[[0,1],[1,2]]",
            "algorithm.lr=1e-3",
            "algorithm.blocks.order=fixed",
            "algorithm.blocks.fixed_order=[1,0]",
            "algorithm.blocks.groups=[{name: embed, pattern: embed_tokens}]",
            "tracking.output_dir=/tmp/deca-runs",
        ],
        ["topology.type=torus", "num_clients=6", "topology.torus_shape=[3,2]", "model.tokenizer=some/tokenizer"],
    ],
    ids=["defaults", "custom", "torus"],
)
def test_dump_config_round_trips_through_load_config(tmp_path, overrides):
    # Prepare
    original = load_config(None, overrides)

    # Execute
    path = _write(tmp_path, dump_config(original), name="dumped.yaml")
    reloaded = load_config(path)

    # Assert
    assert reloaded == original
    assert reloaded.fingerprint() == original.fingerprint()
    assert list(yaml.safe_load(path.read_text())) == list(ExperimentConfig.model_fields)


# --------------------------------------------------------------------------- shipped deployment configs


def test_experiment_config_files_skips_kuberay_and_the_runtime_env(tmp_path):
    # Prepare
    for relative in [
        "local/quickstart.yaml",
        "local/nested/deep.yaml",
        "cluster/big.yaml",
        "kuberay/raycluster.yaml",
        "kuberay/nested/job.yaml",
        "runtime_env.yaml",
        "local/notes.md",
    ]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("name: x\n")

    # Execute
    found = experiment_config_files(tmp_path)

    # Assert
    assert [path.relative_to(tmp_path).as_posix() for path in found] == [
        "cluster/big.yaml",
        "local/nested/deep.yaml",
        "local/quickstart.yaml",
    ]


def test_deployments_ship_at_least_one_experiment_config():
    # Prepare / Execute: SHIPPED_CONFIGS was globbed at import
    # Assert: an empty glob would silently skip the parametrized test below
    assert SHIPPED_CONFIGS, f"no experiment config found under {DEPLOYMENTS}"


@pytest.mark.parametrize(
    "path", SHIPPED_CONFIGS, ids=[path.relative_to(DEPLOYMENTS).as_posix() for path in SHIPPED_CONFIGS]
)
def test_shipped_config_parses(path):
    # Prepare / Execute
    config = load_config(path)

    # Assert
    assert isinstance(config, ExperimentConfig)
