"""Writes English -> French pairs from the gettext catalogs of installed
packages (Django's and Sphinx's `locale/fr/LC_MESSAGES/*.po`, human
translations) as `source<TAB>target` lines for `translate.py --pairs`.

Plural, fuzzy, obsolete and untranslated entries are skipped. The last line
printed is a JSON summary.

    pip install django sphinx polib
    python examples/catalog_pairs.py --output runs/catalog_pairs.tsv
    python examples/translate.py --pairs runs/catalog_pairs.tsv
"""

import argparse
import json
import os

from keras_mha.seq2seq import data


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output", default="runs/catalog_pairs.tsv")
    parser.add_argument("--packages", nargs="+", default=["django", "sphinx"])
    parser.add_argument("--language", default="fr")
    args = parser.parse_args(argv)
    catalogs = data.installed_catalogs(args.packages, args.language)
    if not catalogs:
        raise SystemExit(
            f"No {args.language} catalogs in the installed packages "
            f"{args.packages}: pip install {' '.join(args.packages)}"
        )
    pairs = data.catalog_pairs(catalogs)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as file:
        file.writelines(f"{source}\t{target}\n" for source, target in pairs)
    summary = {"catalogs": len(catalogs), "pairs": len(pairs)}
    summary["output"] = args.output
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
