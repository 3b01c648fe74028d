"""The profile owns every hyperparameter; the component configs are built from it and carry no
defaults of their own."""
import dataclasses

import pytest

from fatsmb_lib.models.denoiser import DenoiserConfig
from fatsmb_lib.models.diffurec import DiffuRecConfig
from fatsmb_lib.models.diffusion import DiffusionConfig
from fatsmb_lib.models.encoder import EncoderConfig
from fatsmb_lib.models.gru4rec import GRU4RecConfig
from fatsmb_lib.models.mbgcn import MBGCNConfig
from fatsmb_lib.models.mbgmn import MBGMNConfig
from fatsmb_lib.models.mbstr import MBSTRConfig
from fatsmb_lib.models.mgpt import MGPTConfig
from fatsmb_lib.models.missl import MISSLConfig
from fatsmb_lib.models.pbat import PBATConfig
from fatsmb_lib.training.config import (
    PROFILES,
    DataSettings,
    DenoiserSettings,
    DiffusionSettings,
    EncoderSettings,
    Profile,
    TrainingSettings,
    get_profile,
)
from fatsmb_lib.training.peers import BASELINES, MBSTRSettings
from fatsmb_lib.training.train import TrainConfig

MODEL_KIND_FLAGS = {"use_behavior", "causal"}  # which model it is, not a hyperparameter


@pytest.mark.parametrize("config", [EncoderConfig, DiffusionConfig, DenoiserConfig, TrainConfig,
                                    GRU4RecConfig, MBSTRConfig, DiffuRecConfig, MBGCNConfig,
                                    MBGMNConfig, MGPTConfig, PBATConfig,
                                    MISSLConfig])
def test_component_configs_have_no_defaults_of_their_own(config):
    with_default = [f.name for f in dataclasses.fields(config)
                    if f.default is not dataclasses.MISSING and f.name not in MODEL_KIND_FLAGS]
    assert with_default == []


def test_profile_defaults_are_the_papers():
    p = Profile(name="x", dataset="yelp")
    assert (p.d_model, p.max_len, p.n_layers, p.dropout, p.lr, p.batch_size) == (64, 50, 2, 0.1, 2e-3, 256)
    assert (p.T, p.stride, p.p_uncond, p.n_denoiser_layers) == (200, 20, 0.2, 2)


def test_builders_carry_every_profile_value():
    p = get_profile("smoke").replace(d_model=48, n_heads=3, rope_base=500.0, T=77, stride=7,
                                     omega=2.5, prediction="eps", n_shared=3,
                                     denoiser_dropout=0.3, lr=1e-4, stage2_epochs=9,
                                     warmup_epochs=2, lr_decay="cosine", monitor="Recall@20")
    enc = p.config(EncoderConfig, n_items=10, n_behaviors=4)
    assert (enc.d_model, enc.n_heads, enc.rope_base, enc.n_items, enc.n_behaviors) == (48, 3, 500.0, 10, 4)
    diff = p.config(DiffusionConfig)
    assert (diff.T, diff.stride, diff.omega, diff.prediction) == (77, 7, 2.5, "eps")
    den = p.config(DenoiserConfig, n_behaviors=4)
    assert (den.d_model, den.n_shared, den.denoiser_dropout, den.n_behaviors) == (48, 3, 0.3, 4)
    with pytest.raises(TypeError, match=r"needs \['n_items', 'n_behaviors'\]"):
        p.config(EncoderConfig)
    train = p.train_config("stage2", seed=5)
    assert (train.lr, train.max_epochs, train.seed, train.warmup_epochs, train.lr_decay,
            train.monitor) == (1e-4, 9, 5, 2, "cosine", "Recall@20")
    assert p.train_config("stage1", 0).min_epochs == p.min_epochs
    assert p.train_config("stage3", 0).min_epochs == 1
    with pytest.raises(ValueError, match="stage must be one of"):
        p.train_config("stage4", 0)


def test_replace_names_unknown_fields():
    with pytest.raises(TypeError, match=r"no field\(s\) \['omgea'\]"):
        PROFILES["default"].replace(omgea=2.0)


def test_dataset_adjustments_come_from_the_registry():
    assert get_profile("paper", "ijcai").batch_size == 64
    assert get_profile("paper", "yelp").batch_size == 256
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("fast")


def test_a_recipe_is_one_setting_away(tmp_path):
    from fatsmb_lib.training.epochs import RECIPES
    from fatsmb_lib.training.run import open_run

    ctx = open_run("synthetic-tiny", "smoke", "cpu", tmp_path / "run", tmp_path, recipe="paper",
                   window_stride=3)
    assert ctx.profile.last_only_prob == RECIPES["paper"]["last_only_prob"]
    assert ctx.profile.window_stride == 3  # explicit overrides come after the recipe
    with pytest.raises(ValueError, match="unknown recipe"):
        open_run("synthetic-tiny", "smoke", "cpu", tmp_path / "run", tmp_path, recipe="fast")


def test_baseline_patience_acts_on_the_baselines_only():
    p = PROFILES["default"].replace(patience=4, baseline_patience=9)
    assert p.train_config("baseline", 0).patience == 9
    assert {p.train_config(stage, 0).patience for stage in ("stage1", "stage2", "stage3")} == {4}


def test_stage1_precision_acts_on_the_cloze_models_only():
    p = PROFILES["default"].replace(precision="fp32", stage1_precision="bf16")
    assert p.train_config("stage1", 0).precision == "bf16"
    assert {p.train_config(stage, 0).precision for stage in ("baseline", "stage2", "stage3")} == {"fp32"}


def test_every_component_config_uses_the_profile_s_names():
    """A config field is either a profile field of the same name or one of the data's sizes:
    no name changes at the boundary."""
    profile_fields = {f.name for f in dataclasses.fields(Profile)}
    for cls in (EncoderConfig, DiffusionConfig, DenoiserConfig, GRU4RecConfig, MBSTRConfig,
                DiffuRecConfig, MBGCNConfig, MBGMNConfig, MGPTConfig, PBATConfig,
                TrainConfig):
        names = ({f.name for f in dataclasses.fields(cls)} - {"n_items", "n_behaviors", "n_users"}
                 - MODEL_KIND_FLAGS)  # the data's sizes, then flags
        if cls is TrainConfig:  # per stage: epochs and patience are picked by stage
            names -= {"max_epochs", "patience", "min_epochs", "seed", "precision"}
        assert names <= profile_fields, (cls.__name__, names - profile_fields)


def test_settings_have_one_default_each_and_peers_bring_theirs():
    groups = [DataSettings, EncoderSettings, DiffusionSettings, DenoiserSettings,
              TrainingSettings, *(spec.settings for spec in BASELINES.values() if spec.settings)]
    names = [f.name for g in groups for f in dataclasses.fields(g)]
    assert len(names) == len(set(names))                       # one owner per setting
    assert set(names) | {"name", "dataset"} == {f.name for f in dataclasses.fields(Profile)}
    assert Profile(name="x", dataset="y").mbstr_buckets == MBSTRSettings().mbstr_buckets
