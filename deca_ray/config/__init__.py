"""ExperimentConfig: every knob of a deca_ray run, validated once at the edge.

Configs are YAML files plus dotted ``--set a.b=c`` overrides. Unknown keys are rejected
with their path and the closest valid name; bounds and cross-field rules are checked here
so that nothing downstream has to re-validate.

    base.py        ConfigPart: extra keys forbidden, assignments re-validated
    inputs.py      model, data, partition, topology
    training.py    blocks, the options every method shares, evaluation
    runtime.py     Ray runtime and failure policies, tracking, checkpoints
    experiment.py  ExperimentConfig: the sections, ``algorithm`` as the method's own options model
    loading.py     YAML + overrides → ExperimentConfig, errors naming each field

A method's own options (DECA's BMA, LoRA's rank...) live with the method in ``deca_ray.methods``.
"""

from deca_ray.config.base import ConfigPart
from deca_ray.config.experiment import ExperimentConfig, method_options
from deca_ray.config.inputs import DataConfig, ModelConfig, PartitionConfig, TinyModelConfig, TopologyConfig
from deca_ray.config.loading import config_from_dict, dump_config, load_config, merge_overrides
from deca_ray.config.runtime import CheckpointConfig, RuntimeConfig, TrackingConfig
from deca_ray.config.training import AlgorithmConfig, BlocksConfig, EvaluationConfig, RegexGroup

__all__ = [
    "AlgorithmConfig", "BlocksConfig", "CheckpointConfig", "ConfigPart", "DataConfig", "EvaluationConfig",
    "ExperimentConfig", "ModelConfig", "PartitionConfig", "RegexGroup", "RuntimeConfig", "TinyModelConfig",
    "TopologyConfig", "TrackingConfig", "config_from_dict", "dump_config", "load_config", "merge_overrides",
    "method_options",
]
