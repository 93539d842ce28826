"""``finegrain datasets`` and ``finegrain inspect-data``: what formats exist, what a root holds."""

from __future__ import annotations

from collections import Counter

from finegrain.commands._common import add_data_options


def register(sub) -> None:
    p = sub.add_parser("datasets", help="list the dataset formats finegrain reads")
    p.set_defaults(func=list_formats)
    p = sub.add_parser("inspect-data", help="classes, counts per split and unreadable images of a dataset root")
    data = p.add_argument_group("data")
    add_data_options(data, "dataset root", format_default="imagefolder", root_required=True, root_aliases=("--root",))
    data.add_argument("--no-decode", action="store_true", help="only count files, do not open every image")
    p.set_defaults(func=inspect)


def list_formats(args) -> int:
    from finegrain.data.formats import FORMATS

    for fmt in FORMATS.values():
        print(f"{fmt.name:12s} {fmt.description}  [splits: {', '.join(fmt.splits)}]")
    return 0


def inspect(args) -> int:
    from finegrain.data.formats import FORMATS, has_split, read_split
    from finegrain.data.images import load_rgb
    from finegrain.errors import DataError

    if args.data_format not in FORMATS:
        raise DataError(f"unknown dataset format {args.data_format!r}; known: {', '.join(FORMATS)}")
    class_names, bad = None, []
    for split in FORMATS[args.data_format].splits:
        if not has_split(args.data_format, args.data, split):
            continue
        try:
            samples = read_split(args.data_format, args.data, split)
        except DataError as err:
            print(f"{split}: {err}")
            continue
        counts = Counter(label for _, label in samples.samples)
        class_names = class_names or samples.class_names
        print(f"{split}: {len(samples.samples)} images, {len(samples.class_names)} classes, "
              f"{min(counts.values())}-{max(counts.values())} per class")
        if not args.no_decode:
            for path, _ in samples.samples:
                try:
                    load_rgb(path)
                except DataError as err:
                    bad.append(str(err))
    if class_names is None:
        raise DataError(f"{args.data}: no split of format {args.data_format!r} found")
    print(f"classes ({len(class_names)}): {', '.join(class_names[:20])}{' ...' if len(class_names) > 20 else ''}")
    if bad:
        print(f"{len(bad)} unreadable image(s):")
        for line in bad:
            print(f"  {line}")
        return 1
    if not args.no_decode:
        print("all images readable")
    return 0
