"""modify_ms: MODIFY (ICASSP 2023) and its baselines in MindSpore."""
from setuptools import find_packages, setup

setup(
    name="modify_ms",
    version="0.1.0",
    description="MODIFY face stylization without style images, in MindSpore, with baselines and PyTorch weight importers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9,<3.12",
    packages=find_packages(include=["modify_ms*", "baselines_ms*", "weights_convert*"]),
    # the LPIPS v0.1 linear layers (BSD-2-Clause, licence beside them), the checkpoint key manifests,
    # the quickstart's prior (trained by the project on its built-in photos: docs/prior.md)
    # and CLIP's BPE vocabulary (MIT, licence beside it)
    package_data={"modify_ms": ["assets/lpips_v0.1/*", "assets/manifests/*.json", "assets/prior/*",
                                "assets/clip/*"]},
    # the user-facing tools (tools/<tool>.py runs the same main); the benchmarks stay python tools/bench_*.py
    entry_points={"console_scripts": [
        "modify-train=modify_ms.commands.train:main",
        "modify-stylize=modify_ms.commands.stylize:main",
        "modify-evaluate=modify_ms.commands.evaluate:cli",
        "modify-align=modify_ms.commands.align:main",
        "modify-convert=modify_ms.commands.convert:cli",
        "modify-render=modify_ms.commands.render:cli",
        "modify-export=modify_ms.commands.export_weights:main",
        "modify-train-baseline=baselines_ms.commands.train_baseline:main",
        "modify-compare=modify_ms.commands.compare:cli",
        "modify-jojogan=baselines_ms.commands.jojogan:main",
    ],
    # stylization methods beyond MODIFY: modify_ms.stylizers loads each register() once, lazily
    # (the library never imports baselines_ms); one line per method
    "modify_ms.stylizers": [
        "psp-unpaired=baselines_ms.psp_unpaired.stylizer:register",
        "jojogan=baselines_ms.jojogan.stylizer:register",
        "stargan2=baselines_ms.stargan2.stylizer:register",
        "blendgan=baselines_ms.blendgan.stylizer:register",
        "mmfs=baselines_ms.mmfs.stylizer:register",
    ]},
    install_requires=[
        "mindspore==2.10.0",
        "numpy>=1.22,<2",  # NumPy 2 breaks MindSpore 2.10 (Tensor.reshape raises SystemError)
        "mindcv==0.3.0",
        "opencv-python>=4.5,<5",
        "pyyaml>=5.4",
        "scipy>=1.7",
        "pillow>=9",
        "tqdm>=4.60",
        "scikit-image>=0.19",  # bundled real photos (astronaut, lfw_subset)
        "matplotlib>=3.5",  # bundled real photo (grace_hopper.jpg)
    ],
    extras_require={
        # torch is only the numerical reference in tests, never imported at run time;
        # the alignment tests need the align extra's dlib and landmark model.
        "test": ["pytest>=7", "pytest-xdist>=3.5", "torch==2.13.0", "dlib-bin>=19.24", "face-recognition-models>=0.3.0"],
        "align": ["dlib-bin>=19.24", "face-recognition-models>=0.3.0"],
    },
)
