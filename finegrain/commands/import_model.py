"""``finegrain import-model WEIGHTS --arch NAME --classes classes.txt``: a classifier trained
elsewhere (timm or torchvision state dict) as a finegrain model folder, so that eval, predict,
export, report and ``distill --teacher`` take it like a run.

Nothing heavy is imported here at module level: building the parser must stay fast.
"""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("import-model", help="turn a timm/torchvision classifier's weights into a finegrain model folder",
                       description="Write model.safetensors + model.json for a foreign classifier, verified by loading "
                                   "it back. Torch files are read with weights_only=True: pickled code never runs.")
    p.add_argument("weights", help="state dict: .safetensors, or a torch file (.pth/.pt/.bin) of tensors only; "
                                   "prefixes such as module./model./_orig_mod. are handled")
    p.add_argument("--arch", required=True, help="timm architecture, optionally with a pretrained tag "
                                                 "(resnet50, resnet50.a1_in1k); the tag sets default preprocessing")
    p.add_argument("--classes", required=True, help="text file, one class name per line, in output order")
    p.add_argument("--out", help="model folder to write (default: WEIGHTS' name without suffixes + '-finegrain', "
                                 "beside it)")
    prep = p.add_argument_group("preprocessing the model expects (stored in model.json)")
    prep.add_argument("--image-size", type=int, help="input size in pixels (default: timm's for --arch, else 224)")
    prep.add_argument("--crop-ratio", type=float, help="resize to size / ratio, then center crop "
                                                    "(default: timm's crop_pct for --arch, else 0.875)")
    prep.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                   help="normalization mean (default: timm's for --arch, else ImageNet's)")
    prep.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                   help="normalization std (default: timm's for --arch, else ImageNet's)")
    p.add_argument("--force", action="store_true", help="replace an existing model.json in --out")
    p.set_defaults(func=run)


def run(args) -> int:
    from finegrain.importing import import_model

    result = import_model(args.weights, args.arch, args.classes, args.out, image_size=args.image_size,
                          crop_ratio=args.crop_ratio, mean=args.mean, std=args.std, overwrite=args.force)
    print(json.dumps(result.as_dict(), indent=2))
    return 0
