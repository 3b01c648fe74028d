"""A user's own dataset, registered by a small JSON file, works everywhere a built-in one does:
the registry, the cache, open_run, the pipeline (and so papermill's ``-p dataset``), and
recommendations in the dataset's own item ids."""
import importlib.util
import json

import numpy as np
import pytest

from fatsmb_lib.course import pipeline
from fatsmb_lib.data import synthetic
from fatsmb_lib.data.datasets import load_interactions, raw_file, register, registered, spec
from fatsmb_lib.data.preprocess import cache_key, load_dataset
from fatsmb_lib.data.readers import DataError
from fatsmb_lib.training.config import get_profile
from fatsmb_lib.training.run import open_run
from fatsmb_lib.training.stages import train_mbae

BEHAVIORS = ("pv", "fav", "cart", "buy")
COLUMNS = {"user": 0, "item": 1, "behavior": 3, "timestamp": 4}
USER_BASE, ITEM_BASE, T0 = 100_000, 7_000_000, 1_511_500_000


def write_shop_log(path, seed=0):
    """A headerless e-commerce log, ``user_id,item_id,category_id,behavior_type,timestamp``,
    made from synthetic-tiny with ids and times shifted so they look like a real export."""
    x = synthetic.generate(synthetic.PRESETS["tiny"], seed=seed)
    names = np.array(x.behavior_names)[x.behaviors - 1]
    lines = [f"{USER_BASE + u},{ITEM_BASE + i},{i % 17},{b},{T0 + t}"
             for u, i, b, t in zip(x.users.tolist(), x.items.tolist(), names.tolist(),
                                   x.timestamps.tolist())]
    path.write_text("\n".join(lines) + "\n")
    return x


@pytest.fixture
def shop(tmp_path):
    """data_dir with shop.csv registered as dataset 'shop'."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_shop_log(data_dir / "shop.csv")
    register("shop", "shop.csv", COLUMNS, BEHAVIORS, header=False, data_dir=data_dir)
    return data_dir


def test_register_writes_a_small_json_the_registry_reads(shop):
    entry = json.loads((shop / "shop.dataset.json").read_text())
    assert entry == {"file": "shop.csv", "columns": COLUMNS, "header": False,
                     "behaviors": list(BEHAVIORS)}
    s = spec("shop", shop)
    assert s.kind == "table" and s.behaviors == BEHAVIORS and registered(shop) == ("shop",)
    assert raw_file("shop", shop) == shop / "shop.csv"
    x = load_interactions("shop", shop)
    assert x.behavior_names == BEHAVIORS and x.users.min() > USER_BASE and x.items.min() > ITEM_BASE


def test_a_registration_written_by_hand_with_a_header_and_profile_changes(tmp_path):
    (tmp_path / "mine.tsv").write_text("who\twhat\tact\twhen\nu1\tp\tclick\t1\nu1\tq\tbuy\t2\n"
                                       "u1\tr\tclick\t3\n")
    (tmp_path / "mine.dataset.json").write_text(json.dumps({
        "file": "mine.tsv", "columns": {"user": "who", "item": "what", "behavior": "act",
                                        "timestamp": "when"},
        "behaviors": ["click", "buy"], "profile": {"batch_size": 32}}))
    data = load_dataset("mine", tmp_path)
    assert data.item_keys.tolist() == ["p", "q", "r"] and data.behavior_names == ("click", "buy")
    assert get_profile("smoke", "mine", tmp_path).batch_size == 32


def test_the_cache_key_follows_the_registration(shop):
    before = cache_key("shop", shop)
    register("shop", "shop.csv", {**COLUMNS, "user": 2}, BEHAVIORS, header=False, data_dir=shop)
    assert cache_key("shop", shop) != before          # other columns: other prepared data


def test_unknown_name_lists_registered_ones_and_says_how_to_register(shop):
    with pytest.raises(DataError) as err:
        spec("shoop", shop)
    msg = str(err.value)
    assert "unknown dataset 'shoop'" in msg and f"registered in {shop}: shop" in msg
    assert "<data_dir>/<name>.dataset.json" in msg and "ml100k" in msg


@pytest.mark.parametrize("text, needle", [
    ('{"file": "shop.csv", ', "not valid JSON (line 1"),
    ('{"file": "shop.csv", "columns": {"user": 0}, "behaviors": ["pv"]}', '"columns" must map user'),
    ('{"file": "shop.csv", "columns": {}, "behaviors": []}', '"behaviors" must list'),
    ('{"file": "shop.csv", "colums": {}, "behaviors": ["pv"]}', "unknown key(s) ['colums']"),
    ('{"file": "shop.csv", "columns": {"user": 0, "item": 1, "behavior": 3, "timestamp": 4}, '
     '"behaviors": ["pv"], "header": "no"}', '"header" must be true or false'),
])
def test_a_bad_registration_names_its_file_and_the_problem(tmp_path, text, needle):
    (tmp_path / "bad.dataset.json").write_text(text)
    with pytest.raises(DataError) as err:
        spec("bad", tmp_path)
    assert str(tmp_path / "bad.dataset.json") in str(err.value) and needle in str(err.value)


def test_missing_registered_file_names_the_registration(tmp_path):
    register("gone", "gone.csv", COLUMNS, BEHAVIORS, header=False, data_dir=tmp_path)
    with pytest.raises(DataError, match=r"gone.csv not found.*gone.dataset.json names it"):
        raw_file("gone", tmp_path)


def test_register_refuses_builtin_and_odd_names(tmp_path):
    with pytest.raises(DataError, match="built-in dataset name"):
        register("ml100k", "x.csv", COLUMNS, BEHAVIORS, data_dir=tmp_path)
    with pytest.raises(DataError, match="dataset name '../x'"):
        register("../x", "x.csv", COLUMNS, BEHAVIORS, data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_register_open_run_train_recommend_in_raw_ids(shop, tmp_path):
    """The issue's end-to-end case: register -> open_run -> a tiny MBAE -> raw item ids."""
    raw = load_interactions("shop", shop)
    ctx = open_run("shop", "smoke", "cpu", tmp_path / "run", shop, stage1_epochs=2)
    assert ctx.dataset == "shop" and ctx.data.n_items == len(np.unique(raw.items))
    mbae, history = train_mbae(ctx)
    assert history.epochs == [1, 2]
    user = int(raw.users[0])
    top = ctx.recommend(mbae, user, "buy", k=5)
    ids = [item for item, _ in top]
    assert len(set(ids)) == 5 and set(ids) <= set(raw.items.tolist())
    assert all(isinstance(i, int) and i > ITEM_BASE for i in ids)   # not the internal 1..N
    assert [name for _, name in top] == [str(i) for i in ids]        # no titles: the ids
    assert ctx.recommend(mbae, str(user), 4, k=5) == top            # id as text, behavior by id
    with pytest.raises(KeyError, match="user 'nobody' is not in shop"):
        ctx.recommend(mbae, "nobody", "buy")
    with pytest.raises(ValueError, match="behavior 'purchase' is not one of"):
        ctx.recommend(mbae, user, "purchase")


def test_recommend_with_item_keys_returns_raw_ids_and_without_internal_ones(shop, tmp_path):
    from fatsmb_lib.training.evaluate import recommend
    from fatsmb_lib.training.peers import fit_pop

    ctx = open_run("shop", "smoke", "cpu", tmp_path / "run", shop)
    data, pop = ctx.data, fit_pop(ctx)
    args = (pop, data.seq_items[:10], data.seq_behaviors[:10], 4)
    sizes = dict(n_items=data.n_items, n_behaviors=data.n_behaviors, max_len=20, k=3)
    internal = [i for i, _ in recommend(*args, **sizes)]
    raw = [i for i, _ in recommend(*args, **sizes, item_keys=data.item_keys)]
    assert raw == data.item_keys[np.array(internal) - 1].tolist() and min(raw) > ITEM_BASE


def test_pipeline_and_papermill_run_a_registered_dataset(shop, tmp_path):
    """``python -m fatsmb_lib.course.pipeline --dataset shop`` passes ``-p dataset shop`` to papermill;
    notebook 01 (no training) runs on it end to end."""
    pipeline.main(["--dataset", "shop", "--profile", "smoke", "--device", "cpu",
                   "--data-dir", str(shop), "--reports-dir", str(tmp_path / "reports"),
                   "--only", "01"])
    run_dir = tmp_path / "reports" / "shop" / "smoke"
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary["status"] == "finished" and list(summary["seconds"]) == ["01_entropy_analysis"]
    stats = json.loads((tmp_path / "reports" / "shop" / "stats.json").read_text())
    assert stats["dataset"] == "shop" and set(stats["behaviors"]) == set(BEHAVIORS)



# ----------------------------------------------------------------------------- registration mistakes


def test_a_registration_giving_one_column_two_roles_is_refused(tmp_path):
    (tmp_path / "shop.dataset.json").write_text(json.dumps({
        "file": "shop.csv", "columns": {**COLUMNS, "item": 0}, "header": False,
        "behaviors": list(BEHAVIORS)}))
    with pytest.raises(DataError) as err:
        spec("shop", tmp_path)
    assert str(err.value).startswith(
        f"{tmp_path / 'shop.dataset.json'}: \"columns\" gives column 0 to user and item: user, "
        f"item, behavior and timestamp each need their own column. A registration looks like")
    with pytest.raises(DataError, match="gives column 0 to user and item"):
        register("shop", "shop.csv", {**COLUMNS, "item": 0}, BEHAVIORS, header=False,
                 data_dir=tmp_path / "fresh")
    assert registered(tmp_path / "fresh") == ()                # register() kept nothing


def test_errors_of_a_registered_file_name_the_registration_and_the_json_fix(shop):
    lines = (shop / "shop.csv").read_text().replace(",", "\t")
    (shop / "shop.csv").write_text(lines)
    with pytest.raises(DataError) as err:
        load_interactions("shop", shop)
    assert str(err.value).endswith(
        f"set \"sep\": \"\\t\" in {shop / 'shop.dataset.json'}.")


def test_a_dataset_too_small_to_evaluate_is_refused_before_training(tmp_path):
    """Two users and a handful of items: every model would score Recall@20 = 1.0."""
    lines = [f"{u},{i},0,{b},{1511500000 + i}" for u in (1, 2)
             for i, b in enumerate(("pv", "fav", "cart", "buy", "pv"))]
    (tmp_path / "two.csv").write_text("\n".join(lines) + "\n")
    register("two", "two.csv", COLUMNS, BEHAVIORS, header=False, data_dir=tmp_path)
    assert load_dataset("two", tmp_path).n_users == 2          # loading is fine, evaluating is not
    with pytest.raises(DataError) as err:
        open_run("two", "smoke", "cpu", tmp_path / "run", tmp_path)
    assert str(err.value) == (
        f"two ({tmp_path / 'two.csv'}) is too small to evaluate: after preprocessing it has 2 "
        f"users (at least 50: one user moves every metric by 1/2 = 50%) and 5 items (at least "
        f"100: every model ranks all items and is scored on its top 10 and 20, so with 5 items a "
        f"random ranking scores Recall@20 = 1.00, and every model 1.0). Add interactions (each "
        f"user needs at least 3), or try the course on synthetic-tiny (200 users, about 300 "
        f"items).")
    assert not (tmp_path / "run").exists()


def test_the_floor_lets_the_course_data_through(shop, tmp_path):
    from fatsmb_lib.data.preprocess import MIN_ITEMS, MIN_USERS, check_evaluable

    names = [("synthetic-tiny", tmp_path), ("shop", shop)]
    if importlib.util.find_spec("recbole") is not None:
        names.append(("ml100k", tmp_path))
    for name, data_dir in names:
        data = load_dataset(name, data_dir)
        check_evaluable(data, name)
        assert data.n_users >= 4 * MIN_USERS and data.n_items >= 2 * MIN_ITEMS


def test_the_run_records_its_own_dataset_not_the_profiles(shop):
    """stage1_metrics.json stores ``settings.to_dict()``: its dataset is the run's."""
    assert get_profile("smoke", "shop", shop).dataset == "shop"
    assert get_profile("default", "ml100k").dataset == "ml100k"


def test_smoke_is_bounded_on_any_dataset_and_leaves_synthetic_tiny_alone(tmp_path):
    from fatsmb_lib.data.preprocess import subsample

    smoke = get_profile("smoke")
    config = synthetic.SyntheticConfig(n_users=800, n_items=2_000, n_interactions=120_000,
                                       min_len=5, max_len=1000, length_sigma=1.0)
    x = synthetic.generate(config, seed=0)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    names = np.array(x.behavior_names)[x.behaviors - 1]
    (data_dir / "big.csv").write_text("".join(
        f"{u},{i},0,{b},{T0 + t}\n" for u, i, b, t in zip(x.users.tolist(), x.items.tolist(),
                                                          names.tolist(), x.timestamps.tolist())))
    register("big", "big.csv", COLUMNS, BEHAVIORS, header=False, data_dir=data_dir)
    full = load_dataset("big", data_dir)
    assert full.n_users == 800 and full.lengths.max() > smoke.max_history
    with pytest.warns(UserWarning) as record:
        ctx = open_run("big", "smoke", "cpu", tmp_path / "run", data_dir)
    (note,) = [str(w.message) for w in record if "caps the data" in str(w.message)]
    assert "500 of 800 users sampled (max_users=500)" in note
    assert ctx.data.n_users == smoke.max_users and ctx.data.lengths.max() == smoke.max_history
    # the rows each stage sees: Cloze windows, stage 2-3 prefixes
    from fatsmb_lib.data.batches import ClozeView, PrefixView
    assert len(PrefixView(ctx.data, smoke.max_len, "train", smoke.prefixes_per_user)) \
        <= smoke.max_users * smoke.prefixes_per_user
    assert len(ClozeView(ctx.data, smoke.max_len, smoke.window_stride)) \
        <= smoke.max_users * -(-smoke.max_history // smoke.max_len)       # 500 x 10 windows
    # each kept user's sequence is the tail of the full one, in the same raw ids
    u = 3
    raw_user = ctx.data.user_keys[u]
    full_u = int(np.flatnonzero(full.user_keys == raw_user)[0])
    tail = full.item_keys[full.seq_items[full.offsets[full_u]:full.offsets[full_u + 1]] - 1]
    kept = ctx.data.item_keys[ctx.data.seq_items[ctx.data.offsets[u]:ctx.data.offsets[u + 1]] - 1]
    assert kept.tolist() == tail[-len(kept):].tolist()
    # synthetic-tiny (the tests' and the smoke run's data) is inside every cap: unchanged
    tiny = load_dataset("synthetic-tiny", data_dir)
    assert subsample(tiny, smoke.max_users, smoke.max_history) is tiny
    assert len(PrefixView(tiny, smoke.max_len, "train", smoke.prefixes_per_user)) \
        == len(PrefixView(tiny, smoke.max_len, "train", None))


def test_reports_of_other_datasets_are_ignored_by_git():
    import shutil
    import subprocess

    from fatsmb_lib.support.paths import project_root

    if shutil.which("git") is None or not (project_root() / ".git").exists():
        pytest.skip("needs the git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "reports/shop/default/metrics.json",
         "reports/shop/metrics.json", "reports/ml100k/default/metrics.json",
         "reports/bench/ml100k-cpu.md", "reports/ml100k/default/.events.jsonl"],
        cwd=project_root(), capture_output=True, text=True).stdout.split()
    assert ignored == ["reports/shop/default/metrics.json", "reports/shop/metrics.json",
                       "reports/ml100k/default/.events.jsonl"]
