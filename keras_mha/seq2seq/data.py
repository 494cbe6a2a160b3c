"""Sentence pairs: a TSV reader, gettext catalogs and generated corpora.

`read_pairs` reads a user's `source<TAB>target` file (the Anki / Tatoeba
format, where extra columns may follow). `catalog_pairs` turns installed
gettext catalogs (`.po` files, human translations that pip packages such as
Django and Sphinx ship) into pairs. `generate_pairs` writes, offline and
deterministically, an English -> Spanish-like corpus from a small grammar with
real structure: word mapping, gender and number agreement of determiners and
adjectives, subject-verb agreement, adjectives after the noun, `a` before an
animate object (contracted with `el` to `al`) and negation with "no".
`number_pairs` writes English -> French sentences about counted things, whose
targets carry capitals, hyphenated numbers (`quatre-vingt-deux`), elisions
and final punctuation.
"""

import glob
import importlib.util
import os
import random

# Nouns: English singular and plural, Spanish singular and plural, gender,
# and whether the noun is animate (takes the personal `a` as an object).
NOUNS = [
    ("dog", "dogs", "perro", "perros", "m", True),
    ("cat", "cats", "gato", "gatos", "m", True),
    ("boy", "boys", "niño", "niños", "m", True),
    ("girl", "girls", "niña", "niñas", "f", True),
    ("man", "men", "hombre", "hombres", "m", True),
    ("woman", "women", "mujer", "mujeres", "f", True),
    ("friend", "friends", "amigo", "amigos", "m", True),
    ("sister", "sisters", "hermana", "hermanas", "f", True),
    ("book", "books", "libro", "libros", "m", False),
    ("house", "houses", "casa", "casas", "f", False),
    ("car", "cars", "coche", "coches", "m", False),
    ("apple", "apples", "manzana", "manzanas", "f", False),
    ("table", "tables", "mesa", "mesas", "f", False),
    ("letter", "letters", "carta", "cartas", "f", False),
    ("flower", "flowers", "flor", "flores", "f", False),
    ("city", "cities", "ciudad", "ciudades", "f", False),
]
# Adjectives: English, then Spanish masculine/feminine singular and plural.
ADJECTIVES = [
    ("big", "grande", "grande", "grandes", "grandes"),
    ("small", "pequeño", "pequeña", "pequeños", "pequeñas"),
    ("red", "rojo", "roja", "rojos", "rojas"),
    ("black", "negro", "negra", "negros", "negras"),
    ("white", "blanco", "blanca", "blancos", "blancas"),
    ("new", "nuevo", "nueva", "nuevos", "nuevas"),
    ("old", "viejo", "vieja", "viejos", "viejas"),
    ("beautiful", "bonito", "bonita", "bonitos", "bonitas"),
]
# Determiners: English singular/plural, Spanish by (gender, plural).
DETERMINERS = [
    ("the", "the", {"m": ("el", "los"), "f": ("la", "las")}),
    ("a", "some", {"m": ("un", "unos"), "f": ("una", "unas")}),
    ("my", "my", {"m": ("mi", "mis"), "f": ("mi", "mis")}),
    ("this", "these", {"m": ("este", "estos"), "f": ("esta", "estas")}),
]
# Pronouns: English, Spanish, and the person index into the conjugations.
PRONOUNS = [
    ("I", "yo", 0),
    ("you", "tú", 1),
    ("he", "él", 2),
    ("she", "ella", 2),
    ("we", "nosotros", 3),
    ("they", "ellos", 4),
]
# Verbs: English base and third-person forms, Spanish present tense for
# yo, tú, él/ella, nosotros, ellos.
TRANSITIVE_VERBS = [
    ("see", "sees", ("veo", "ves", "ve", "vemos", "ven")),
    ("want", "wants", ("quiero", "quieres", "quiere", "queremos", "quieren")),
    ("have", "has", ("tengo", "tienes", "tiene", "tenemos", "tienen")),
    (
        "find",
        "finds",
        ("encuentro", "encuentras", "encuentra", "encontramos", "encuentran"),
    ),
    ("buy", "buys", ("compro", "compras", "compra", "compramos", "compran")),
]
INTRANSITIVE_VERBS = [
    ("sleep", "sleeps", ("duermo", "duermes", "duerme", "dormimos", "duermen")),
    ("run", "runs", ("corro", "corres", "corre", "corremos", "corren")),
    ("walk", "walks", ("camino", "caminas", "camina", "caminamos", "caminan")),
    ("live", "lives", ("vivo", "vives", "vive", "vivimos", "viven")),
]
PREPOSITIONS = [("in", "en"), ("with", "con"), ("near", "cerca de")]


def _noun_phrase(rng, animate=None):
    """A random noun phrase: `(english, spanish, person, animate)`."""
    nouns = [noun for noun in NOUNS if animate in (None, noun[5])]
    en_noun, en_plural, es_noun, es_plural, gender, is_animate = rng.choice(
        nouns
    )
    en_determiner, en_determiner_plural, es_determiners = rng.choice(
        DETERMINERS
    )
    plural = rng.random() < 0.4
    english = [en_determiner_plural if plural else en_determiner]
    spanish = [es_determiners[gender][plural]]
    adjective = rng.choice(ADJECTIVES) if rng.random() < 0.6 else None
    if adjective:
        english.append(adjective[0])
    english.append(en_plural if plural else en_noun)
    spanish.append(es_plural if plural else es_noun)
    if english[0] == "a" and english[1][0] in "aeiou":
        english[0] = "an"
    if adjective:  # Spanish puts the adjective after the noun, agreeing.
        spanish.append(adjective[1 + (gender == "f") + 2 * plural])
    person = 4 if plural else 2
    return " ".join(english), " ".join(spanish), person, is_animate


def _subject(rng):
    if rng.random() < 0.3:
        return rng.choice(PRONOUNS)
    return _noun_phrase(rng, animate=True)[:3]


def _sentence(rng):
    """One random `(english, spanish)` sentence pair."""
    en_subject, es_subject, person = _subject(rng)
    transitive = rng.random() < 0.6
    verbs = TRANSITIVE_VERBS if transitive else INTRANSITIVE_VERBS
    en_base, en_third, es_forms = rng.choice(verbs)
    third_singular = person == 2
    if rng.random() < 0.25:
        en_verb = ("does not " if third_singular else "do not ") + en_base
        es_verb = "no " + es_forms[person]
    else:
        en_verb = en_third if third_singular else en_base
        es_verb = es_forms[person]
    english, spanish = [en_subject, en_verb], [es_subject, es_verb]
    if transitive:
        en_object, es_object, _, animate = _noun_phrase(rng)
        if animate:  # The personal `a`; `a el` contracts to `al`.
            es_object = (
                "al" + es_object[2:]
                if es_object.startswith("el ")
                else "a " + es_object
            )
        english.append(en_object)
        spanish.append(es_object)
    else:
        en_preposition, es_preposition = rng.choice(PREPOSITIONS)
        en_place, es_place, _, _ = _noun_phrase(rng)
        english.append(f"{en_preposition} {en_place}")
        spanish.append(f"{es_preposition} {es_place}")
    english, spanish = " ".join(english), " ".join(spanish)
    return (
        english[0].upper() + english[1:] + ".",
        spanish[0].upper() + spanish[1:] + ".",
    )


def generate_pairs(num_pairs=5000, seed=0):
    """Generates distinct English -> Spanish-like sentence pairs.

    The same `num_pairs` and `seed` give the same pairs on every machine.

    Args:
        num_pairs: int. Number of distinct pairs. Defaults to `5000`.
        seed: int. Seed of the grammar's random choices. Defaults to `0`.

    Returns:
        A list of `(source, target)` string tuples.

    Example:

    >>> keras_mha.seq2seq.data.generate_pairs(2, seed=1)[0]
    ('I find this big city.', 'Yo encuentro esta ciudad grande.')
    """
    if num_pairs <= 0:
        raise ValueError(
            f"`num_pairs` expected a positive integer. Received: "
            f"num_pairs={num_pairs}"
        )
    rng = random.Random(seed)
    pairs = {}
    for _ in range(100 * num_pairs):
        english, spanish = _sentence(rng)
        pairs.setdefault(english, spanish)
        if len(pairs) == num_pairs:
            return list(pairs.items())
    raise ValueError(
        f"The grammar yields fewer than num_pairs={num_pairs} distinct pairs."
    )


def read_pairs(path):
    """Reads `source<TAB>target` pairs from a UTF-8 text file.

    Columns after the second (such as the attribution of Anki / Tatoeba
    files) are ignored, and blank lines are skipped.

    Args:
        path: path of the file.

    Returns:
        A list of `(source, target)` string tuples.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file holds no pairs, or a line has no tab or an
            empty source or target; the message names the line number.

    Example:

    >>> with open("pairs.tsv", "w", encoding="utf-8") as file:
    ...     _ = file.write("Hello.\\tBonjour.\\tattribution\\n\\n")
    >>> keras_mha.seq2seq.data.read_pairs("pairs.tsv")
    [('Hello.', 'Bonjour.')]
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"`pairs` expected an existing file of source<TAB>target lines. "
            f"Received: pairs={path!r}"
        )
    pairs = []
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            columns = line.split("\t")
            if (
                len(columns) < 2
                or not columns[0].strip()
                or not (columns[1].strip())
            ):
                raise ValueError(
                    f"{path}:{line_number}: expected `source<TAB>target` with "
                    f"both sides non-empty. Received: {line[:80]!r}"
                )
            pairs.append((columns[0].strip(), columns[1].strip()))
    if not pairs:
        raise ValueError(
            f"{path} holds no source<TAB>target pairs (the file is empty)."
        )
    return pairs


def split_pairs(pairs, validation_fraction=0.1, test_fraction=0.1, seed=0):
    """Shuffles `pairs` and splits them into train, validation and test.

    Args:
        pairs: iterable of `(source, target)` pairs.
        validation_fraction: float. Share held out for validation (at least
            one pair). Defaults to `0.1`.
        test_fraction: float. Share held out for test (at least one pair).
            Defaults to `0.1`.
        seed: int. Seed of the shuffle. Defaults to `0`.

    Returns:
        A tuple `(train, validation, test)` of lists of pairs.

    Raises:
        ValueError: if `pairs` are too few to hold both out.

    Example:

    >>> train, validation, test = keras_mha.seq2seq.data.split_pairs(
    ...     [(str(i), str(i)) for i in range(20)]
    ... )
    >>> len(train), len(validation), len(test)
    (16, 2, 2)
    """
    pairs = list(pairs)
    random.Random(seed).shuffle(pairs)
    num_test = max(1, round(len(pairs) * test_fraction))
    num_validation = max(1, round(len(pairs) * validation_fraction))
    if num_test + num_validation >= len(pairs):
        raise ValueError(
            f"{len(pairs)} pairs are too few to hold out {num_validation} for "
            f"validation and {num_test} for test."
        )
    test = pairs[:num_test]
    validation = pairs[num_test : num_test + num_validation]
    return pairs[num_test + num_validation :], validation, test


# Names, masculine nouns (English plural, French plural) and sentence
# templates of `number_pairs`.
_NAMES = ["Marie", "Paul", "Jean-Luc", "Chloé", "Léa", "Hugo", "Anne-Sophie"]
_COUNTED = [
    ("cats", "chats"),
    ("dogs", "chiens"),
    ("books", "livres"),
    ("trees", "arbres"),
    ("birds", "oiseaux"),
    ("pencils", "crayons"),
    ("cakes", "gâteaux"),
    ("boats", "bateaux"),
]
_TEMPLATES = [
    ("{name} has {n} {nouns}.", "{name} a {n} {nouns}."),
    ("Does {name} have {n} {nouns}?", "{name} a-t-il {n} {nouns} ?"),
    ("I see {n} {nouns}!", "Je vois {n} {nouns} !"),
    ("We don't want {n} {nouns}.", "Nous ne voulons pas {n} {nouns}."),
]


def number_pairs(num_pairs=4000, seed=0, largest=99):
    """Generates English -> French pairs about 2 to `largest` things.

    Numbers are spelled out by `num2words` in both languages, with their
    hyphens (`eighty-two` -> `quatre-vingt-deux`); the French side keeps
    capitals, elisions and the space before `?` and `!`.

    Args:
        num_pairs: int. Number of distinct pairs. Defaults to `4000`.
        seed: int. Seed of the random choices. Defaults to `0`.
        largest: int. Largest number. Defaults to `99`.

    Returns:
        A list of `(source, target)` string tuples.

    Example:

    >>> keras_mha.seq2seq.data.number_pairs(1, seed=3)
    [('I see thirty-two books!', 'Je vois trente-deux livres !')]
    """
    from num2words import num2words

    rng = random.Random(seed)
    pairs = {}
    for _ in range(100 * num_pairs):
        n = rng.randint(2, largest)
        en_nouns, fr_nouns = rng.choice(_COUNTED)
        english, french = rng.choice(_TEMPLATES)
        name = rng.choice(_NAMES)
        source = english.format(
            name=name, n=num2words(n, lang="en"), nouns=en_nouns
        )
        target = french.format(
            name=name, n=num2words(n, lang="fr"), nouns=fr_nouns
        )
        pairs.setdefault(source[0].upper() + source[1:], target)
        if len(pairs) == num_pairs:
            return list(pairs.items())
    raise ValueError(
        f"The templates yield fewer than num_pairs={num_pairs} distinct pairs."
    )


def installed_catalogs(packages=("django", "sphinx"), language="fr"):
    """The `.po` catalogs of `language` that installed `packages` ship.

    Args:
        packages: names of installed Python packages. Defaults to
            `("django", "sphinx")` (the `corpus` extra).
        language: str. Locale directory name. Defaults to `"fr"`.

    Returns:
        A sorted list of paths (empty for a package that is not installed).

    Example:

    >>> keras_mha.seq2seq.data.installed_catalogs(["no_such_package"])
    []
    """
    paths = []
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = spec.submodule_search_locations[0]
        pattern = f"**/locale/{language}/LC_MESSAGES/*.po"
        paths += glob.glob(os.path.join(root, pattern), recursive=True)
    return sorted(paths)


def catalog_pairs(paths):
    """`(msgid, msgstr)` pairs of gettext catalogs, deduplicated.

    Plural, fuzzy, obsolete and untranslated entries are skipped, and so
    are entries with a tab or a line break (they do not fit a TSV line).

    Args:
        paths: list of `.po` file paths.

    Returns:
        A list of `(source, target)` string tuples, in file order.

    Example:

    >>> with open("fr.po", "w", encoding="utf-8") as file:
    ...     _ = file.write('msgid "Save"\\nmsgstr "Enregistrer"\\n')
    >>> keras_mha.seq2seq.data.catalog_pairs(["fr.po"])
    [('Save', 'Enregistrer')]
    """
    import polib

    pairs = {}
    for path in paths:
        for entry in polib.pofile(path):
            if (
                entry.msgid_plural
                or entry.fuzzy
                or entry.obsolete
                or not entry.msgid.strip()
                or not entry.msgstr.strip()
                or any(c in entry.msgid + entry.msgstr for c in "\t\n\r")
            ):
                continue
            pairs.setdefault(entry.msgid.strip(), entry.msgstr.strip())
    return list(pairs.items())
