"""Validated configuration: one pydantic model per YAML section."""
from rayal.config.loader import (ConfigError, apply_overrides, config_from_dict, dump_config,
                                 load_config, parse_override)
from rayal.config.sections import (ALL_MEASURES, FRAME_MEASURES, MC_MEASURES, PIXEL_MEASURES,
                                   DataConfig, ModelConfig, PoolConfig, RayalConfig, RayConfig,
                                   ScoringConfig, SelectionConfig, SuperpixelConfig,
                                   SyntheticConfig)

__all__ = [
    "ALL_MEASURES", "FRAME_MEASURES", "MC_MEASURES", "PIXEL_MEASURES", "ConfigError",
    "DataConfig", "ModelConfig", "PoolConfig", "RayConfig", "SelectionConfig", "RayalConfig", "ScoringConfig",
    "SuperpixelConfig", "SyntheticConfig", "apply_overrides", "config_from_dict",
    "dump_config", "load_config", "parse_override",
]
