"""The sentence-pair reader, the gettext catalogs, the generated corpora
and the split."""

import pytest

from keras_mha.seq2seq import data as translation_data


def write(tmp_path, text):
    path = tmp_path / "pairs.tsv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_read_pairs_ignores_extra_columns_and_blank_lines(tmp_path):
    path = write(
        tmp_path,
        "Go.\tVe.\tCC-BY 2.0 (France) Attribution: tatoeba.org\n"
        "\n"
        "I ran.\tCorrí.\r\n",
    )
    assert translation_data.read_pairs(path) == [
        ("Go.", "Ve."),
        ("I ran.", "Corrí."),
    ]


@pytest.mark.parametrize(
    "bad_line",
    ["no tab here", "\tempty source", "empty target\t", "only\t  \tmore"],
    ids=["no_tab", "empty_source", "empty_target", "blank_target"],
)
def test_read_pairs_names_the_bad_line(tmp_path, bad_line):
    path = write(tmp_path, f"Go.\tVe.\nHi.\tHola.\n{bad_line}\nRun!\tCorre!\n")
    with pytest.raises(ValueError, match=f"{path}:3:"):
        translation_data.read_pairs(path)


@pytest.mark.parametrize("text", ["", "\n \n"], ids=["empty", "blank_lines"])
def test_read_pairs_rejects_a_file_without_pairs(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="no source<TAB>target pairs"):
        translation_data.read_pairs(path)


def test_read_pairs_names_a_missing_file(tmp_path):
    path = str(tmp_path / "missing.tsv")
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        translation_data.read_pairs(path)


def test_generate_pairs_is_deterministic_and_distinct():
    pairs = translation_data.generate_pairs(300, seed=3)
    assert pairs == translation_data.generate_pairs(300, seed=3)
    assert pairs != translation_data.generate_pairs(300, seed=4)
    assert len({source for source, _ in pairs}) == 300


def test_generated_adjectives_follow_the_noun_and_agree():
    checked = 0
    for source, target in translation_data.generate_pairs(3000):
        words = source.rstrip(".").lower().split()
        if words[:2] != ["the", "red"]:
            continue
        [noun] = [n for n in translation_data.NOUNS if words[2] in n[:2]]
        plural = words[2] == noun[1]
        feminine = noun[4] == "f"
        article = [["el", "la"], ["los", "las"]][plural][feminine]
        adjective = [["rojo", "roja"], ["rojos", "rojas"]][plural][feminine]
        spanish_noun = noun[3] if plural else noun[2]
        assert target.lower().startswith(
            f"{article} {spanish_noun} {adjective} "
        ), (source, target)
        checked += 1
    assert checked >= 10


def test_generated_verbs_agree_with_the_subject():
    checked = 0
    for source, target in translation_data.generate_pairs(3000):
        if source.startswith("We "):
            verb = target.split()[2 if " no " in target else 1]
            assert target.startswith("Nosotros "), (source, target)
            assert verb.endswith("mos"), (source, target)
            checked += 1
    assert checked >= 10


def test_generate_pairs_rejects_a_bad_count():
    with pytest.raises(ValueError, match="num_pairs=0"):
        translation_data.generate_pairs(0)


def test_split_pairs_partitions_the_pairs():
    pairs = translation_data.generate_pairs(200)
    train, validation, test = translation_data.split_pairs(pairs, 0.1, 0.2)
    assert (len(train), len(validation), len(test)) == (140, 20, 40)
    assert sorted(train + validation + test) == sorted(pairs)


def test_split_pairs_rejects_too_few_pairs():
    with pytest.raises(ValueError, match="too few"):
        translation_data.split_pairs([("a", "b"), ("c", "d")])


def test_number_pairs_keep_capitals_hyphens_and_punctuation():
    pairs = translation_data.number_pairs(500, seed=2)
    assert pairs == translation_data.number_pairs(500, seed=2)
    assert len({source for source, _ in pairs}) == 500
    targets = [target for _, target in pairs]
    assert all(t[0].isupper() and t[-1] in ".?!" for t in targets)
    assert sum("-" in t for t in targets) > 250  # quatre-vingt-deux ...
    assert any(t.endswith(" ?") for t in targets)  # French spacing
    eighty_two = [t for s, t in pairs if " eighty-two " in s]
    assert eighty_two and all(" quatre-vingt-deux " in t for t in eighty_two)


PO = """
msgid ""
msgstr "Content-Type: text/plain; charset=UTF-8\\n"

msgid "Save"
msgstr "Enregistrer"

#, fuzzy
msgid "Delete"
msgstr "Supprimer"

msgid "%(count)s item"
msgid_plural "%(count)s items"
msgstr[0] "%(count)s élément"
msgstr[1] "%(count)s éléments"

msgid "Untranslated"
msgstr ""

msgid "Two\\nlines"
msgstr "Deux\\nlignes"

msgid "It's l'été"
msgstr "C'est l'été"

msgid "Save"
msgstr "Sauver"
"""


def test_catalog_pairs_skip_fuzzy_plural_empty_and_multiline(tmp_path):
    path = tmp_path / "django.po"
    path.write_text(PO, encoding="utf-8")
    assert translation_data.catalog_pairs([str(path)]) == [
        ("Save", "Enregistrer"),
        ("It's l'été", "C'est l'été"),
    ]


def test_installed_catalogs_hold_human_translations():
    paths = translation_data.installed_catalogs()
    if not paths:
        pytest.skip("django and sphinx are not installed (the test extra)")
    pairs = translation_data.catalog_pairs(paths)
    assert len(pairs) > 1000
    assert all(source and target for source, target in pairs)
