"""Readers: MB-STR text, the recbole copy of MovieLens-100K, users' CSV/TSV, and their errors."""
import importlib.util

import numpy as np
import pytest

from fatsmb_lib.data import readers
from fatsmb_lib.data.datasets import KNOWN_DATASETS, load_interactions, spec
from fatsmb_lib.data.readers import DataError, read_mbstr, read_ml100k, read_table

YELP = spec("yelp").behaviors
GOOD_LINES = ["7\t100\tpos\t1500", "7\t101\ttip\t1400", "3\t100\tneg\t1600", "3\t102\tneutral\t10"]
needs_recbole = pytest.mark.skipif(importlib.util.find_spec("recbole") is None,
                                   reason="recbole not installed: pip install --no-deps recbole==1.2.1")


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_mbstr_values_and_behavior_order(tmp_path):
    x = read_mbstr(write(tmp_path / "yelp.txt", GOOD_LINES), YELP)
    assert x.users.tolist() == [7, 7, 3, 3]
    assert x.items.tolist() == [100, 101, 100, 102]
    # ids follow the dataset order tip=1, neg=2, neutral=3, pos=4
    assert x.behaviors.tolist() == [4, 1, 2, 3]
    assert x.timestamps.tolist() == [1500, 1400, 1600, 10]
    assert x.behavior_names == YELP and x.source.endswith("yelp.txt")


def test_read_mbstr_skips_blank_lines_and_crlf(tmp_path):
    path = tmp_path / "retail.txt"
    path.write_bytes(b"1\t2\tpv\t5\r\n\r\n1\t3\tbuy\t6\r\n")
    x = read_mbstr(path, spec("retail").behaviors)
    assert x.behaviors.tolist() == [1, 4] and x.items.tolist() == [2, 3]


@pytest.mark.parametrize("bad, needle", [
    ("7\t100\tpos", "expected 4 fields, found 3"),
    ("7\t100\tpos\t1500\textra", "expected 4 fields, found 5"),
    ("u7\t100\tpos\t1500", "not an integer user id"),
    ("7\t10.5\tpos\t1500", "not an integer item id"),
    ("7\t100\tpos\t15.5", "not an integer timestamp"),
    ("7\t100\tclick\t1500", "not a known behavior name (one of tip, neg, neutral, pos)"),
])
def test_read_mbstr_bad_line_names_file_line_and_text(tmp_path, bad, needle):
    path = write(tmp_path / "yelp.txt", GOOD_LINES[:2] + [bad] + GOOD_LINES[2:])
    with pytest.raises(DataError) as err:
        read_mbstr(path, YELP)
    msg = str(err.value)
    assert "yelp.txt" in msg and "line 3" in msg and repr(bad) in msg and needle in msg
    assert "uid<TAB>sid<TAB>behavior<TAB>timestamp" in msg  # says what a line must be


def test_missing_mbstr_file_says_where_to_put_it_and_where_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_interactions("yelp", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "yelp.txt") in msg
    assert "https://github.com/yuanenming/mb-str" in msg
    assert "https://github.com/OrchidViolet/FatsMB" in msg


def test_empty_file(tmp_path):
    (tmp_path / "ijcai.txt").write_text("")
    with pytest.raises(DataError, match="ijcai.txt is empty"):
        load_interactions("ijcai", data_dir=tmp_path)


def test_load_interactions_dispatches_mbstr_presets(tmp_path):
    write(tmp_path / "retail.txt", ["1\t2\tcart\t5", "1\t3\tfav\t6"])
    x = load_interactions("retail", data_dir=tmp_path)
    assert x.behavior_names == ("pv", "fav", "cart", "buy") and x.behaviors.tolist() == [3, 2]


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DataError) as err:
        load_interactions("movielens")
    assert all(name in str(err.value) for name in KNOWN_DATASETS)


def test_load_interactions_synthetic_tiny():
    x = load_interactions("synthetic-tiny", synthetic_seed=3)
    assert len(x) == 5_000 and x.behavior_names == ("pv", "fav", "cart", "buy")


# --------------------------------------------------------------------------- users' tables

def test_read_table_csv_with_mapping_and_string_ids(tmp_path):
    path = write(tmp_path / "mine.csv", ["when,who,what,act,extra",
                                         "10,alice,book,view,x", "5,bob,pen,buy,y",
                                         "12,alice,pen,view,z"])
    x = read_table(path, {"user": "who", "item": "what", "behavior": "act", "timestamp": "when"})
    assert x.users.tolist() == ["alice", "bob", "alice"]
    assert x.items.tolist() == ["book", "pen", "pen"]
    assert x.behavior_names == ("buy", "view")            # None -> sorted unique names
    assert x.behaviors.tolist() == [2, 1, 2] and x.timestamps.tolist() == [10, 5, 12]


def test_read_table_tsv_numeric_ids_and_given_names(tmp_path):
    path = write(tmp_path / "mine.tsv", ["u\ti\tb\tt", "2\t30\tclick\t1.5", "1\t4\tbuy\t0.5"])
    x = read_table(path, {"user": "u", "item": "i", "behavior": "b", "timestamp": "t"},
                   behavior_names=("click", "buy"))
    assert x.users.dtype == np.int64 and x.items.tolist() == [30, 4]
    assert x.behaviors.tolist() == [1, 2] and x.timestamps.tolist() == [1.5, 0.5]


MAPPING = {"user": "u", "item": "i", "behavior": "b", "timestamp": "t"}


@pytest.mark.parametrize("bad, needle, names", [
    ("1,2,click,yesterday", "not a number (e.g. Unix seconds)", None),
    ("1,2,click", "expected 4 fields, found 3", None),
    ("1,2,like,7", "not a known behavior name (one of click, buy)", ("click", "buy")),
])
def test_read_table_bad_line(tmp_path, bad, needle, names):
    path = write(tmp_path / "mine.csv", ["u,i,b,t", "1,2,click,5", bad])
    with pytest.raises(DataError) as err:
        read_table(path, MAPPING, behavior_names=names)
    msg = str(err.value)
    assert "mine.csv" in msg and "line 3" in msg and repr(bad) in msg and needle in msg


def test_read_table_mapping_errors(tmp_path):
    path = write(tmp_path / "mine.csv", ["u,i,b,t", "1,2,click,5"])
    with pytest.raises(DataError, match="missing: timestamp"):
        read_table(path, {"user": "u", "item": "i", "behavior": "b"})
    with pytest.raises(DataError, match=r"line 1: no column named 'time'.*header has: u, i, b, t"):
        read_table(path, {**MAPPING, "timestamp": "time"})
    with pytest.raises(DataError, match="pass sep"):
        read_table(tmp_path / "mine.dat", MAPPING)


# --------------------------------------------------------------------------- MovieLens-100K

@needs_recbole
def test_read_ml100k_sizes_and_recipe():
    x = read_ml100k()
    assert len(np.unique(x.users)) == 943 and len(np.unique(x.items)) == 1682 and len(x) == 100_000
    assert x.behavior_names == ("neg", "neutral", "pos")
    counts = np.bincount(x.behaviors, minlength=4)[1:]
    assert counts.sum() == 100_000 and (counts > 0).all()
    # the recipe, checked against the raw ratings read independently with the csv module
    import csv
    with open(readers.ml100k_path()) as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    ratings = np.array([float(r[2]) for r in rows])
    assert counts.tolist() == [(ratings <= 2).sum(), (ratings == 3).sum(), (ratings >= 4).sum()]
    assert x.item_titles[1] == "Toy Story"


def ml100k_file(path, lines):
    return write(path, ["user_id:token\titem_id:token\trating:float\ttimestamp:float"] + lines)


def test_read_ml100k_recipe_on_a_small_file(tmp_path):
    path = ml100k_file(tmp_path / "ml-100k.inter", [f"1\t{r}\t{r}\t{100 + r}" for r in range(1, 6)])
    x = read_ml100k(path)
    assert x.behaviors.tolist() == [1, 1, 2, 3, 3] and x.item_titles is None


@pytest.mark.parametrize("bad, needle", [("1\t2\t6\t100", "not a rating in 1..5"),
                                         ("1\t2\t3", "expected 4 fields, found 3"),
                                         ("1\tx\t3\t100", "not an integer item id")])
def test_read_ml100k_bad_line(tmp_path, bad, needle):
    path = ml100k_file(tmp_path / "ml-100k.inter", ["1\t2\t3\t100", bad])
    with pytest.raises(DataError) as err:
        read_ml100k(path)
    msg = str(err.value)
    assert "ml-100k.inter" in msg and "line 3" in msg and repr(bad) in msg and needle in msg


def test_read_ml100k_wrong_header(tmp_path):
    path = write(tmp_path / "ml-100k.inter", ["user\titem\trating\ttimestamp", "1\t2\t3\t4"])
    with pytest.raises(DataError, match=r"ml-100k.inter, line 1: unexpected header"):
        read_ml100k(path)


def test_missing_recbole_says_how_to_install(monkeypatch):
    monkeypatch.setattr(readers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError) as err:
        load_interactions("ml100k")
    assert "pip install --no-deps recbole==1.2.1" in str(err.value)
    assert "Makefile" in str(err.value)


# --------------------------------------------------------------------------- silent mis-parses


def test_mbstr_with_five_fields_on_every_line_is_an_error_not_a_shifted_read(tmp_path):
    """pandas would take the surplus first column as the index: users would become items."""
    path = write(tmp_path / "retail.txt", ["9\t1\t2\tpv\t5", "9\t2\t3\tbuy\t6", "9\t3\t4\tpv\t7"])
    with pytest.raises(DataError) as err:
        read_mbstr(path, spec("retail").behaviors)
    msg = str(err.value)
    assert "line 1: expected 4 fields, found 5" in msg and "uid<TAB>sid<TAB>behavior<TAB>timestamp" in msg


def test_ml100k_with_a_surplus_field_on_every_line_is_an_error(tmp_path):
    path = ml100k_file(tmp_path / "ml-100k.inter", ["1\t2\t3\t4\t100", "1\t3\t3\t4\t101"])
    with pytest.raises(DataError, match=r"line 2: expected 4 fields, found 5"):
        read_ml100k(path)


@pytest.mark.parametrize("reader, lines", [
    ("mbstr", ["1\t2\tpv\t5", "1\t3\tbuy\t99999999999999999999"]),
    ("ml100k", ["1\t2\t3\t5", "1\t3\t3\t99999999999999999999"]),
    ("table", ["u,i,b,t", "1,2,pv,5", "1,3,buy,99999999999999999999"]),
])
def test_a_timestamp_that_overflows_int64_names_its_line(tmp_path, reader, lines):
    if reader == "mbstr":
        read = lambda: read_mbstr(write(tmp_path / "retail.txt", lines), spec("retail").behaviors)  # noqa: E731
        line = 2
    elif reader == "ml100k":
        read = lambda: read_ml100k(ml100k_file(tmp_path / "ml-100k.inter", lines))  # noqa: E731
        line = 3
    else:
        read = lambda: read_table(write(tmp_path / "mine.csv", lines), MAPPING)  # noqa: E731
        line = 3
    with pytest.raises(DataError) as err:
        read()
    msg = str(err.value)
    assert f"line {line}: field 4 is '99999999999999999999'" in msg and "int64" in msg


def test_read_table_every_line_has_the_header_width(tmp_path):
    # a short line whose missing field is not the timestamp: pandas would pad it silently
    path = write(tmp_path / "mine.csv", ["t,u,i,b", "5,1,2,click", "6,1,3"])
    with pytest.raises(DataError, match=r"line 3: expected 4 fields, found 3"):
        read_table(path, MAPPING)
    path = write(tmp_path / "wide.csv", ["u,i,b,t", "1,2,click,5,extra", "1,3,buy,6,extra"])
    with pytest.raises(DataError, match=r"line 2: expected 4 fields, found 5"):
        read_table(path, MAPPING)


def test_read_table_keeps_genuinely_empty_last_fields(tmp_path):
    path = write(tmp_path / "mine.csv", ["u,i,b,t,note", "1,2,click,5,", "1,3,buy,6,gift"])
    assert read_table(path, MAPPING).items.tolist() == [2, 3]


# --------------------------------------------------------------------------- headerless tables

SHOP = ["1001,50000000000000000001,7,pv,1511544070", "1001,42,7,buy,1511544071",
        "1002,42,9,fav,1511544072"]


def test_read_table_without_header_maps_columns_by_position(tmp_path):
    path = write(tmp_path / "shop.csv", SHOP)
    x = read_table(path, {"user": 0, "item": 1, "behavior": 3, "timestamp": 4},
                   behavior_names=("pv", "fav", "cart", "buy"), header=False)
    assert x.users.tolist() == [1001, 1001, 1002] and x.behaviors.tolist() == [1, 4, 2]
    # a 20-digit id does not fit int64: all item ids stay exact, as text
    assert x.items.tolist() == ["50000000000000000001", "42", "42"]
    assert x.timestamps.dtype == np.int64 and len(x) == 3


def test_read_table_without_header_checks_every_line_and_the_mapping(tmp_path):
    path = write(tmp_path / "shop.csv", SHOP[:2] + ["1002,42,fav,1511544072"])
    positions = {"user": 0, "item": 1, "behavior": 3, "timestamp": 4}
    with pytest.raises(DataError, match=r"line 3: expected 5 fields, found 4.*as in the first line"):
        read_table(path, positions, header=False)
    with pytest.raises(DataError, match=r"is a name, but the file has no header row"):
        read_table(path, {**positions, "user": "user_id"}, header=False)
    with pytest.raises(DataError, match=r"line 1: no column at position 7 \(0-based\) for 'timestamp'"):
        read_table(path, {**positions, "timestamp": 7}, header=False)


def test_read_table_title_column_and_mixed_mapping(tmp_path):
    path = write(tmp_path / "mine.tsv", ["who\titem\tact\twhen\tname", "a\t7\tview\t1\tSeven",
                                         "a\t8\tbuy\t2\tEight", "b\t7\tbuy\t3\tSeven (again)"])
    x = read_table(path, {"user": "who", "item": 1, "behavior": "act", "timestamp": 3, "title": "name"})
    assert x.item_titles == {7: "Seven", 8: "Eight"}


# --------------------------------------------------------------------------- registration mistakes
# Each of these loaded without a word before (or failed with advice that did not help).

POSITIONS = {"user": 0, "item": 1, "behavior": 3, "timestamp": 4}
SHOP_BEHAVIORS = ("pv", "fav", "cart", "buy")


def shop_lines(n_users=3, t0=1511500000):
    return [f"{1000 + u},{7 + k},0,{b},{t0 + 10 * k}" for u in range(n_users)
            for k, b in enumerate(("pv", "fav", "pv", "cart", "buy"))]


def test_the_same_column_for_two_roles_is_refused(tmp_path):
    path = write(tmp_path / "shop.csv", shop_lines())
    with pytest.raises(DataError) as err:
        read_table(path, {**POSITIONS, "item": 0}, header=False)
    assert str(err.value) == (
        f"{path}: columns gives one column (position 0) to user and item (user -> position 0, "
        f"item -> position 0); user, item, behavior and timestamp each need their own column. "
        f"Fix \"columns\".")


def test_duplicated_lines_are_dropped_counted_and_warned(tmp_path):
    lines = shop_lines()
    x = read_table(write(tmp_path / "shop.csv", lines + lines), POSITIONS, header=False)
    assert len(x) == len(lines)                                     # every repeat dropped
    (note,) = x.notes
    assert note == (
        "15 of 30 lines repeat an earlier line exactly (same user, item, behavior and timestamp; "
        "the first: user 1000, item 7, pv at 1511500000): dropped them, keeping one of each. A "
        "repeat carries no order, and a repeated last interaction would make a user's "
        "validation and test items the same. If they are distinct events, give them distinct "
        "timestamps.")
    from fatsmb_lib.data.preprocess import prepare
    with pytest.warns(readers.DataWarning, match="15 of 30 lines repeat an earlier line"):
        data = prepare(x)
    assert (data.split().test_items != data.split().valid_items).all()


def test_timestamps_that_mix_seconds_and_milliseconds_are_refused(tmp_path):
    lines = shop_lines()
    lines[7] = "1001,9,0,pv,1511500020000"                        # milliseconds
    path = write(tmp_path / "shop.csv", lines)
    with pytest.raises(DataError) as err:
        read_table(path, POSITIONS, header=False)
    assert str(err.value) == (
        f"{path}: the timestamps mix units: 14 look like seconds (e.g. 1511500000, line 1); 1 "
        f"looks like milliseconds (e.g. 1511500020000, line 8), judged by their size (Unix "
        f"time is about 1.7e9 in seconds, 1.7e12 in milliseconds). Sorted together, every "
        f"milliseconds value would come after every seconds one and scramble the order of each "
        f"user's interactions. Convert them to one unit (e.g. divide milliseconds by 1000) in "
        f"the file.")
    # small ordinal timestamps (0, 1, 2, ...) have no unit and are fine
    read_table(write(tmp_path / "ord.csv", shop_lines(t0=0)), POSITIONS, header=False)


def test_a_declared_behavior_that_never_occurs_is_warned(tmp_path):
    lines = [line.replace(",fav,", ",pv,") for line in shop_lines()]
    x = read_table(write(tmp_path / "shop.csv", lines), POSITIONS, behavior_names=SHOP_BEHAVIORS,
                   header=False, registration="data/shop.dataset.json")
    assert x.notes == (
        "behavior 'fav' is declared but no line has it (lines per behavior: pv 9, fav 0, cart 3, "
        "buy 3), so it can never be a target and its embedding is never trained. Check the "
        "behavior column (position 3); if the data simply lack it, remove it from \"behaviors\" "
        "in data/shop.dataset.json to silence this.",)


def test_a_tab_separated_file_named_csv_says_sep_tab(tmp_path):
    path = write(tmp_path / "shop.csv", [line.replace(",", "\t") for line in shop_lines()])
    with pytest.raises(DataError) as err:
        read_table(path, POSITIONS, header=False, registration="data/shop.dataset.json")
    assert str(err.value) == (
        f"{path}, line 1: no column at position 1 (0-based) for 'item': the line has 1 field "
        f"when split by ','. The line holds 5 fields separated by TABs: if the file is TAB-separated, set "
        f"\"sep\": \"\\t\" in data/shop.dataset.json.")
    with pytest.raises(DataError, match=r"set \"sep\": \"\\t\" in data/shop.dataset.json"):
        read_table(path, {"user": "u", "item": "i", "behavior": "b", "timestamp": "t"},
                   registration="data/shop.dataset.json")
    with pytest.raises(DataError, match=r"pass sep='\\t' to read_table"):      # from Python
        read_table(path, POSITIONS, header=False)


def test_a_header_while_header_false_says_so(tmp_path):
    path = write(tmp_path / "shop.csv", ["user_id,item_id,category_id,behavior_type,timestamp"]
                 + shop_lines())
    with pytest.raises(DataError) as err:
        read_table(path, POSITIONS, header=False, registration="data/shop.dataset.json")
    assert str(err.value) == (
        f"{path}, line 1 looks like a header: its timestamp field (position 4) is 'timestamp', "
        f"not a number, while line 2's is a number. If the first line names the columns, set "
        f"\"header\": true in data/shop.dataset.json (columns may then be given by name).")


def test_no_header_while_header_true_says_so(tmp_path):
    path = write(tmp_path / "shop.csv", shop_lines())
    with pytest.raises(DataError) as err:
        read_table(path, {"user": "user_id", "item": "item_id", "behavior": "behavior_type",
                          "timestamp": "timestamp"}, registration="data/shop.dataset.json")
    assert str(err.value) == (
        f"{path}, line 1: no column named 'user_id'. The line has 5 fields and holds numbers, so "
        f"it looks like data, not column names: if the file has no header row, set \"header\": "
        f"false in data/shop.dataset.json and give columns as 0-based positions.")


def test_a_utf8_bom_before_the_header_is_dropped(tmp_path):
    path = tmp_path / "shop.csv"
    path.write_bytes("\n".join(["\ufeffuser,item,cat,behavior,ts"] + shop_lines()).encode())
    x = read_table(path, {"user": "user", "item": "item", "behavior": "behavior",
                          "timestamp": "ts"})
    assert x.users.dtype == np.int64 and len(x) == 15
    # without a header the BOM would have stuck to the first user id, making every id text
    path.write_bytes("\n".join(shop_lines()).encode("utf-8-sig"))
    assert read_table(path, POSITIONS, header=False).users.dtype == np.int64


def test_a_non_utf8_byte_names_its_line_and_how_to_convert(tmp_path):
    path = tmp_path / "shop.csv"
    lines = shop_lines()
    lines[5] = "1001,caf\xe9,0,pv,1511500000"
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(DataError) as err:
        read_table(path, POSITIONS, header=False)
    assert str(err.value) == (
        f"{path}, line 6: byte 0xe9 (at character 9) is not UTF-8; the file must be UTF-8. "
        f"Convert it, e.g. `iconv -f cp1252 -t utf-8 shop.csv > utf8-shop.csv` (cp1252: Excel "
        f"on Windows; gbk or gb18030 for Chinese exports, shift_jis for Japanese ones), then "
        f"point to the converted file.")
    with pytest.raises(DataError, match=r"line 1: byte 0xe9"):           # in the header line
        path.write_bytes("caf\xe9,i,b,t\n1,2,pv,3\n".encode("latin-1"))
        read_table(path, MAPPING)


def test_the_dat_separator_advice_is_json_for_a_registration(tmp_path):
    path = write(tmp_path / "ratings.dat", ["1::1193::5::978300760"])
    with pytest.raises(DataError) as err:
        read_table(path, POSITIONS, registration="data/ml1m.dataset.json")
    assert str(err.value) == (
        f"{path}: cannot tell the separator from the extension '.dat'; add \"sep\" to "
        f"data/ml1m.dataset.json, e.g. \"sep\": \"\\t\" (TAB) or \"sep\": \",\". Its lines "
        f"separate fields by '::' (MovieLens 1M style), two characters: convert it first, e.g. "
        f"`sed 's/::/\\t/g' ratings.dat > ratings.tsv`, and register the .tsv.")


PASSWD = ["root:x:0:0:root:/root:/bin/bash", "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
          "secretuser:x:1000:1000:Secret Name,,,:/home/secretuser:/bin/bash"]


@pytest.mark.parametrize("sep, columns, header", [
    (",", POSITIONS, False), (":", POSITIONS, False),
    (":", {"user": 0, "item": 1, "behavior": 2, "timestamp": 5}, False),
    (",", MAPPING, True), (":", MAPPING, True),
])
def test_an_error_never_prints_back_a_file_that_is_not_a_dataset(tmp_path, sep, columns, header):
    """A registration's "file" may point anywhere; its error shows line numbers and field
    counts, not the contents."""
    path = write(tmp_path / "passwd", PASSWD)
    with pytest.raises(DataError) as err:
        read_table(path, columns, sep=sep, behavior_names=SHOP_BEHAVIORS, header=header)
    msg = str(err.value)
    print(msg)
    assert msg.startswith(f"{path}, line 1")
    shown = msg.replace(str(path), "<path>")
    assert not any(word in shown for word in ("root", "daemon", "secret", "Secret", "/bin", "nologin"))


def test_a_recognised_file_still_quotes_its_bad_line(tmp_path):
    path = write(tmp_path / "passwd", PASSWD)
    with pytest.raises(DataError) as err:
        read_table(path, {"user": 0, "item": 1, "behavior": 6, "timestamp": 3}, sep=":",
                   behavior_names=("/bin/bash",), header=False)
    assert str(err.value).startswith(
        f"{path}, line 2: field 7 is '/usr/sbin/nologin', not a known behavior name (one of "
        f"/bin/bash) in 'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin'.")
