"""Lightning data modules: any reader's datasets -> train/val/test/predict DataLoaders."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from .collate import collate_detection
from .readers import build_dataset
from .samplers import (
    AspectRatioGroupedBatchSampler,
    InferenceSampler,
    RepeatFactorTrainingSampler,
    SeededBatchSampler,
    SeededDataset,
    TrainingSampler,
    repeat_factors_from_labels,
)
from .skipping import SkipCorruptImages
from .synthetic.categories import KEYPOINT_OKS_SIGMAS
from .transforms import build_test_transforms, build_train_transforms

if TYPE_CHECKING:
    from detzoo.evaluation.surfaces import SurfaceDistance


class DetectionDataModule(L.LightningDataModule):
    """DataLoaders over given datasets, batches as ``(list_of_images, list_of_targets)``.

    Training: a shuffled, DDP-sharded :class:`TrainingSampler` (or, with
    ``repeat_factor_threshold``, LVIS's :class:`RepeatFactorTrainingSampler`), grouped into
    all-landscape / all-portrait batches when ``aspect_ratio_grouping``. Under DDP train with
    ``Trainer(use_distributed_sampler=False)``: the samplers shard by rank themselves.
    Evaluation and prediction: in order, ``eval_batch_size`` images per batch; under DDP each
    rank takes a contiguous shard without padding (:class:`InferenceSampler`), so every image
    is evaluated exactly once, with or without Lightning's ``use_distributed_sampler``.

    Training samples carry their own augmentation seeds (:class:`SeededBatchSampler`), and the
    module's ``state_dict`` (saved in Lightning checkpoints) holds the training epoch and how many
    of its batches were trained on: ``Trainer.fit(ckpt_path=...)`` from a checkpoint taken in the
    middle of an epoch goes on with the rest of that epoch, as the uninterrupted run would have.

    Args:
        train_dataset, val_dataset, test_dataset, predict_dataset: any of them may be None.
            Grouping and repeat factors need a :class:`~detzoo.data.DetectionDataset`.
        batch_size: training images per batch (per process).
        eval_batch_size: images per batch for val/test/predict.
        num_workers: DataLoader worker processes (0 loads in the main process).
        aspect_ratio_grouping: group training batches by orientation.
        repeat_factor_threshold: Detectron2's ``REPEAT_THRESHOLD`` (LVIS: 0.001); None = off.
        seed: base seed of the training order.
        skip_corrupt_images: what a corrupt image file (empty, truncated, undecodable) does.
            False (the default, as Detectron2): loading raises a
            :class:`~detzoo.data.CorruptImageError` naming the file and image id, which stops
            ``fit``/``validate``. True: the image is left out of its batch, and the model counts
            and names the skipped images at the end of each epoch (a warning and the logged
            ``train/skipped_images``, ``val/skipped_images``); see :mod:`detzoo.data.skipping`.
    """

    def __init__(
        self,
        train_dataset: Dataset | None = None,
        val_dataset: Dataset | None = None,
        test_dataset: Dataset | None = None,
        predict_dataset: Dataset | None = None,
        *,
        batch_size: int = 2,
        eval_batch_size: int = 1,
        num_workers: int = 2,
        aspect_ratio_grouping: bool = True,
        repeat_factor_threshold: float | None = None,
        seed: int = 0,
        skip_corrupt_images: bool = False,
    ) -> None:
        super().__init__()
        self.skip_corrupt_images = skip_corrupt_images
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        self.test_dataset, self.predict_dataset = test_dataset, predict_dataset
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.aspect_ratio_grouping = aspect_ratio_grouping
        self.repeat_factor_threshold = repeat_factor_threshold
        self.seed = seed
        self._train_batches: SeededBatchSampler | None = None
        self._resume_position: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, int]:
        """Where training is in its data: ``{"train_epoch", "train_batches"}``, the epoch the
        training sampler is in and how many of its batches have been trained on (Lightning's
        count of processed batches in the epoch); empty outside ``fit``."""
        trainer = self.trainer
        if self._train_batches is None or trainer is None or trainer.state.fn != "fit":
            return {}
        processed = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"train_epoch": self._train_batches.epoch, "train_batches": processed}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume training data where :meth:`state_dict` was taken (applied by the next
        :meth:`train_dataloader`)."""
        if state_dict:
            self._resume_position = (state_dict["train_epoch"], state_dict["train_batches"])
            # Lightning warns that a mid-epoch resume restarts the epoch's data unless the
            # DataLoader itself has a state_dict; this module resumes it (see train_dataloader)
            warnings.filterwarnings(
                "ignore", message="You're resuming from a checkpoint that ended before the epoch"
            )

    def _loader(self, dataset: Dataset | None, name: str, **kwargs) -> DataLoader:
        if dataset is None:
            raise ValueError(f"{type(self).__name__} has no {name} dataset")
        return DataLoader(
            SkipCorruptImages(dataset) if self.skip_corrupt_images else dataset,
            num_workers=self.num_workers,
            collate_fn=collate_detection,
            persistent_workers=self.num_workers > 0,
            # the loader's own generator seeds its workers: starting an iterator must not draw
            # from the global one, whose state a resumed run restores from the checkpoint
            generator=torch.Generator().manual_seed(self.seed),
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset
        if dataset is None:
            raise ValueError(f"{type(self).__name__} has no train dataset")
        if self.repeat_factor_threshold is not None:
            labels = [dataset.image_labels(i) for i in range(len(dataset))]
            factors = repeat_factors_from_labels(labels, self.repeat_factor_threshold)
            sampler = RepeatFactorTrainingSampler(factors, seed=self.seed)
        else:
            sampler = TrainingSampler(len(dataset), seed=self.seed)
        if self.aspect_ratio_grouping:
            landscape = [dataset.aspect_ratio_is_landscape(i) for i in range(len(dataset))]
            batches = AspectRatioGroupedBatchSampler(sampler, landscape, self.batch_size)
        else:
            batches = BatchSampler(sampler, self.batch_size, drop_last=False)
        seeded = SeededBatchSampler(batches, seed=self.seed)
        if self._resume_position is not None:
            seeded.resume_from(*self._resume_position)
            self._resume_position = None
        self._train_batches = seeded
        return self._loader(SeededDataset(dataset), "train", batch_sampler=seeded)

    def _inference_loader(self, dataset: Dataset | None, name: str) -> DataLoader:
        sampler = InferenceSampler(len(dataset)) if dataset is not None else None
        return self._loader(dataset, name, batch_size=self.eval_batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._inference_loader(self.val_dataset, "val")

    def test_dataloader(self) -> DataLoader:
        return self._inference_loader(self.test_dataset, "test")

    def predict_dataloader(self) -> DataLoader:
        return self._inference_loader(self.predict_dataset, "predict")


class CocoDataModule(DetectionDataModule):
    """COCO-family data from paths; datasets are built in :meth:`setup`.

    Args:
        root: dataset directory; the other paths are relative to it.
        train_json, val_json: annotation files (either may be None).
        train_images, val_images: image directories.
        task: ``instances``, ``keypoints``, ``panoptic``, ``densepose`` or ``lvis``.
        train_panoptic_root, val_panoptic_root: panoptic PNG directories (task ``panoptic``).
        train_min_size, train_max_size, test_min_size, test_max_size: resize sizes
            (Detectron2's defaults); ``lsj_size`` switches training to large-scale jitter.
        keypoint_oks_sigmas: task ``keypoints``: the K per-keypoint OKS sigmas keypoint AP uses
            (Detectron2's ``TEST.KEYPOINT_OKS_SIGMAS``); None: COCO's 17 person sigmas.
        min_keypoints_per_image: task ``keypoints``: training images with fewer labelled
            keypoints are skipped (Detectron2's ``MIN_KEYPOINTS_PER_IMAGE``, 1 in its recipes).
        filter_empty_annotations: skip training images without any non-crowd annotation (no
            objects, or crowd regions only), with a warning counting them — Detectron2's
            ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` (True by default there too). False trains on
            them as all-background images. Validation sets keep every image.
        densepose_geodesics_dir: task ``densepose``: the directory holding Detectron2's SMPL
            geodesic files (:class:`detzoo.evaluation.SMPLGeodesics`); with it the evaluation
            datasets carry them as ``densepose_surface`` and DensePose R-CNN reports DensePose
            AP (GPS, GPSm); None: box AP only.
        **loader_kwargs: :class:`DetectionDataModule`'s keyword arguments.
    """

    def __init__(
        self,
        root: str | Path,
        train_json: str | None = "annotations/instances_train2017.json",
        val_json: str | None = "annotations/instances_val2017.json",
        *,
        train_images: str = "train2017",
        val_images: str = "val2017",
        task: str = "instances",
        train_panoptic_root: str | None = None,
        val_panoptic_root: str | None = None,
        train_min_size: Sequence[int] = (640, 672, 704, 736, 768, 800),
        train_max_size: int = 1333,
        test_min_size: int = 800,
        test_max_size: int = 1333,
        lsj_size: int | None = None,
        keypoint_oks_sigmas: Sequence[float] | None = None,
        min_keypoints_per_image: int = 0,
        filter_empty_annotations: bool = True,
        densepose_geodesics_dir: str | Path | None = None,
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        self.filter_empty_annotations = filter_empty_annotations
        self.keypoint_oks_sigmas = keypoint_oks_sigmas
        self.min_keypoints_per_image = min_keypoints_per_image
        self.densepose_geodesics_dir = densepose_geodesics_dir
        self.root = Path(root)
        self.splits = {
            "train": (train_json, train_images, train_panoptic_root),
            "val": (val_json, val_images, val_panoptic_root),
        }
        self.task = task
        self.train_transforms = build_train_transforms(
            train_min_size, train_max_size, lsj_size=lsj_size
        )
        self.test_transforms = build_test_transforms(test_min_size, test_max_size)

    def _dataset(self, split: str):
        annotation_json, images, panoptic_root = self.splits[split]
        if annotation_json is None:
            return None
        training = split == "train"
        kwargs = {"filter_empty": training and self.filter_empty_annotations}
        if self.task == "panoptic":
            kwargs["panoptic_root"] = self.root / (panoptic_root or "")
        if self.task == "keypoints":
            if self.keypoint_oks_sigmas is not None:
                kwargs["keypoint_oks_sigmas"] = list(self.keypoint_oks_sigmas)
            if training:
                kwargs["min_keypoints_per_image"] = self.min_keypoints_per_image
        if self.task == "densepose" and not training:
            kwargs["densepose_surface"] = self.densepose_surface()
        return build_dataset(
            self.task,
            self.root / images,
            self.root / annotation_json,
            transforms=self.train_transforms if training else self.test_transforms,
            **kwargs,
        )

    def densepose_surface(self) -> SurfaceDistance | None:
        """The body surface DensePose AP of task ``densepose`` measures on:
        :class:`~detzoo.evaluation.SMPLGeodesics` from ``densepose_geodesics_dir`` (relative to
        ``root``), else None."""
        if self.densepose_geodesics_dir is None:
            return None
        # evaluation builds on data, so it is imported when used
        from detzoo.evaluation.surfaces import SMPLGeodesics

        return SMPLGeodesics.from_files(self.root / self.densepose_geodesics_dir)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._dataset("train")
        if stage in (None, "fit", "validate", "test", "predict") and self.val_dataset is None:
            self.val_dataset = self._dataset("val")
            self.test_dataset = self.test_dataset or self.val_dataset
            self.predict_dataset = self.predict_dataset or self.val_dataset


_SHAPES_FILES = {
    "instances": "instances.json",
    "keypoints": "person_keypoints.json",
    "panoptic": "panoptic.json",
    "densepose": "densepose.json",
}


class ShapesDataModule(CocoDataModule):
    """The procedural ``shapes`` dataset (:mod:`detzoo.data.synthetic`), written under ``root``
    by :meth:`prepare_data` when missing, read through the COCO readers.

    Images are 320-640 px, so the default resize is scaled down from COCO's (short side
    384-512 for training, 448 for test). Task ``keypoints`` evaluates keypoint AP with the
    ``figure``'s own OKS sigmas (:data:`detzoo.data.synthetic.KEYPOINT_OKS_SIGMAS`), task
    ``densepose`` DensePose AP on the figure's own surface
    (:class:`detzoo.data.synthetic.surface.ShapesFigureSurface`).

    Args:
        root: dataset directory (``root/{train,val}/...``).
        num_train, num_val, seed: the generator's arguments.
        task: ``instances``, ``keypoints``, ``panoptic`` or ``densepose``.
        train_min_size, train_max_size, test_min_size, test_max_size: as :class:`CocoDataModule`,
            with defaults for shapes' image sizes (explicit parameters, so that LightningCLI, which
            passes every argument, sees these defaults and not COCO's).
        **kwargs: :class:`CocoDataModule`'s and :class:`DetectionDataModule`'s other arguments.
    """

    def __init__(
        self,
        root: str | Path = "datasets/shapes",
        num_train: int = 1000,
        num_val: int = 200,
        seed: int = 0,
        task: str = "instances",
        train_min_size: Sequence[int] = (384, 416, 448, 480, 512),
        train_max_size: int = 853,
        test_min_size: int = 448,
        test_max_size: int = 853,
        **kwargs,
    ) -> None:
        if task not in _SHAPES_FILES:
            raise ValueError(
                f"shapes has no task {task!r}; expected one of {sorted(_SHAPES_FILES)}"
            )
        if task == "keypoints" and kwargs.get("keypoint_oks_sigmas") is None:
            # (LightningCLI passes every argument, unset ones as None)
            kwargs["keypoint_oks_sigmas"] = KEYPOINT_OKS_SIGMAS
        name = _SHAPES_FILES[task]
        super().__init__(
            root,
            f"train/{name}",
            f"val/{name}",
            train_images="train/images",
            val_images="val/images",
            task=task,
            train_panoptic_root="train/panoptic",
            val_panoptic_root="val/panoptic",
            train_min_size=train_min_size,
            train_max_size=train_max_size,
            test_min_size=test_min_size,
            test_max_size=test_max_size,
            **kwargs,
        )
        self.num_train, self.num_val, self.dataset_seed = num_train, num_val, seed

    def densepose_surface(self) -> SurfaceDistance:
        """The ``figure``'s own surface (:class:`~detzoo.data.synthetic.surface.ShapesFigureSurface`)."""
        from detzoo.data.synthetic.surface import ShapesFigureSurface

        return ShapesFigureSurface()

    def prepare_data(self) -> None:
        from detzoo.data.synthetic import write_shapes_dataset

        # Returns at once when root already holds this exact dataset.
        write_shapes_dataset(
            self.root,
            num_train=self.num_train,
            num_val=self.num_val,
            seed=self.dataset_seed,
            progress=False,
        )
