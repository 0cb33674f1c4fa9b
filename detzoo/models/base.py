"""The LightningModule every detzoo detector derives from.

It owns what all algorithms share: input normalisation (with the flip to BGR for caffe/MSRA
weights) and padding into a batch, the loss bookkeeping of ``training_step`` (every term logged
as ``train/loss_<name>``, a non-finite term stops training naming it), prediction dicts mapped to
each image's original size, evaluation (``validation_step``/``test_step`` feed the model's
evaluators, whose metrics are logged as ``val/<task>/<metric>`` and printed as a table, and which
write Detectron2's results files when :attr:`DetectionModel.results_dir` is set) and the
optimiser/schedule. An algorithm implements :meth:`DetectionModel.compute_losses` and
:meth:`DetectionModel.detect`, and says what it is evaluated on in :attr:`DetectionModel.eval_iou_types`.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from detzoo.config import Recordable, build
from detzoo.evaluation import (
    CocoEvaluator,
    CocoResultsWriter,
    KeypointEvaluator,
    LVISEvaluator,
    format_metrics_table,
)
from detzoo.evaluation.results_file import (
    COCO_RESULTS_FILE,
    LVIS_RESULTS_FILE,
    category_ids_by_label,
)
from detzoo.models.postprocess import rescale_detections
from detzoo.models.skipped_images import SkippedImageLog
from detzoo.models.solver import Solver
from detzoo.structures.image_list import ImageList

# ``(images, targets)``; detzoo's loaders give a ``detzoo.data.DetectionBatch``, which unpacks the
# same way and also lists the images skipped as corrupt (``batch.skipped``)
Batch = tuple[list[torch.Tensor], list[dict]]

#: target fields that are Python lists with one entry per instance (kept aligned with ``boxes``
#: when crowd regions are dropped): ``polygons``, each instance's list of flat polygons, and
#: ``densepose``, each instance's DensePose annotation or ``None``
PER_INSTANCE_LISTS = ("polygons", "densepose")

#: target fields that belong to the whole image (never filtered per instance, whatever their
#: first dimension): ``sem_seg`` ``[H, W]``
IMAGE_FIELDS = ("sem_seg",)

#: key of a Lightning checkpoint holding the model's class path (its hyper-parameters are the
#: init arguments), so the checkpoint alone rebuilds the model (detzoo.zoo.load_checkpoint)
CHECKPOINT_CLASS_PATH_KEY = "detzoo_class_path"

#: key of a Lightning checkpoint holding the random states (torch, CUDA, numpy, Python) at saving,
#: restored when ``fit`` resumes from it, so that proposals and ROIs are sampled and images
#: augmented as an uninterrupted run would (Lightning saves no random state). Under DDP the file
#: holds rank 0's states, which every rank resumes from.
CHECKPOINT_RNG_KEY = "detzoo_rng_states"

#: detections per image that LVIS's AP keeps (highest scores first, over all categories):
#: LVIS's and Detectron2's ``LVISEvaluator`` default, also the ``TEST.DETECTIONS_PER_IMAGE`` of
#: Detectron2's LVIS configs
LVIS_MAX_DETS_PER_IMAGE = 300


class DetectionModel(Recordable, L.LightningModule):
    """Shared base of the detzoo LightningModules.

    Args:
        pixel_mean, pixel_std: per-channel normalisation, in the channel order the weights expect
            (``input_format``), on the 0–255 scale.
        input_format: ``"BGR"`` (Detectron2's MSRA/caffe weights) or ``"RGB"``. Inputs are always
            RGB; the model flips them itself.
        size_divisibility: pad the batch to a multiple of this; ``None``: what the model's
            ``backbone`` needs (its ``size_divisibility``, e.g. 32 for FPN), else 0.
        solver: optimiser and schedule for ``configure_optimizers``.

    Subclasses call ``super().__init__(...)`` first; their own arguments are recorded (see
    :mod:`detzoo.config`) and saved as the hyper-parameters, so a checkpoint rebuilds the model.

    Evaluation: ``validation_step``/``test_step`` predict at each image's ``orig_size`` and feed
    :meth:`build_evaluators`' evaluators with the batch's targets, which must be in the original
    image's frame (what :func:`detzoo.data.build_test_transforms` gives: it resizes the image only,
    as Detectron2 evaluates against the original annotations).

    Results files: when :attr:`results_dir` is set, each validation/test run also writes its
    predictions into that folder, as Detectron2's evaluators do into their ``output_dir``
    (see :meth:`build_evaluators`).
    """

    #: COCO iou types this model is evaluated on (Mask R-CNN adds ``"segm"``).
    eval_iou_types: tuple[str, ...] = ("bbox",)

    #: Folder that the evaluation writes its results files into at the end of every
    #: validation/test run; None (the default) writes none. Detectron2 calls this folder
    #: ``OUTPUT_DIR/inference``. It is a run setting and not a hyper-parameter, so checkpoints do
    #: not record it: set it on the model, or with ``detzoo validate|test|fit --results_dir DIR``.
    results_dir: str | Path | None

    def __init__(
        self,
        pixel_mean: Sequence[float] = (103.53, 116.28, 123.675),
        pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
        input_format: str = "BGR",
        size_divisibility: int | None = None,
        solver: Solver | dict | None = None,
    ):
        super().__init__()
        if input_format not in ("BGR", "RGB"):
            raise ValueError(f"input_format must be 'BGR' or 'RGB', got {input_format!r}")
        if len(pixel_mean) != 3 or len(pixel_std) != 3:
            raise ValueError("pixel_mean and pixel_std need 3 values (one per channel)")
        self.register_buffer(
            "pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1), False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1), False
        )
        self.input_format = input_format
        self._size_divisibility = size_divisibility
        self.solver = build(solver) if solver is not None else Solver()
        self.results_dir = None
        self._evaluators: list = []
        self._skipped_train, self._skipped_eval = SkippedImageLog(), SkippedImageLog()

    def on_recorded(self) -> None:
        self.save_hyperparameters(self._detzoo_spec["init_args"], logger=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        spec = getattr(self, "_detzoo_spec", None)
        if spec is not None:
            checkpoint[CHECKPOINT_CLASS_PATH_KEY] = spec["class_path"]
        checkpoint[CHECKPOINT_RNG_KEY] = _rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # only when resuming a fit: loading weights to predict must not reseed the user's RNGs
        trainer = self._trainer
        states = checkpoint.get(CHECKPOINT_RNG_KEY)
        if states is not None and trainer is not None and trainer.state.fn == "fit":
            _set_rng_states(states)

    def on_unrecorded(self, reason: str) -> None:
        warnings.warn(
            f"{type(self).__name__} will not rebuild from a checkpoint alone ({reason}); the weights "
            f"still save and load into a model you construct yourself",
            stacklevel=3,
        )

    # ---- the two things an algorithm implements --------------------------------------------
    def compute_losses(
        self, images: ImageList, targets: Sequence[Mapping[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Loss terms for a normalised, padded batch and its targets (boxes in input pixels)."""
        raise NotImplementedError

    def detect(self, images: ImageList) -> list[dict[str, torch.Tensor]]:
        """Detections per image, in the frame of ``images.image_sizes`` (before rescaling)."""
        raise NotImplementedError

    def test_time_modules(self) -> list:
        """The modules holding test-time thresholds (``score_thresh``, ``nms_thresh``, ...)."""
        return []

    def set_test_thresholds(self, **values: float | int | None) -> None:
        """Sets test-time thresholds (e.g. ``score_thresh=0.3``) on every module that has them, and
        in the saved hyper-parameters; ``None`` values are left as they are."""
        for name, value in values.items():
            if value is None:
                continue
            owners = [m for m in self.test_time_modules() if hasattr(m, name)]
            if not owners:
                raise ValueError(f"{type(self).__name__} has no test-time setting {name!r}")
            for module in owners:
                setattr(module, name, value)
            if name in self.hparams:
                self.hparams[name] = value
            spec = getattr(self, "_detzoo_spec", None)  # what save_weights stores
            if spec is not None and name in spec["init_args"]:
                spec["init_args"][name] = value

    # ---- shared machinery ------------------------------------------------------------------
    def preprocess(self, images: Sequence[torch.Tensor]) -> ImageList:
        """RGB 0–255 ``[3, H, W]`` images (uint8 or float) → normalised, padded :class:`ImageList`."""
        if len(images) == 0:
            raise ValueError("the model got an empty list of images")
        out = []
        for i, image in enumerate(images):
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"image {i} has shape {tuple(image.shape)}; expected [3, H, W] RGB"
                )
            x = image.to(device=self.pixel_mean.device, dtype=torch.float32)
            if self.input_format == "BGR":
                x = x.flip(0)
            out.append((x - self.pixel_mean) / self.pixel_std)
        return ImageList.from_tensors(out, self.size_divisibility)

    @property
    def size_divisibility(self) -> int:
        """Padding multiple of the batch: the given value, else the backbone's need, else 0."""
        if self._size_divisibility is not None:
            return self._size_divisibility
        return getattr(getattr(self, "backbone", None), "size_divisibility", 0)

    def forward(
        self,
        images: Sequence[torch.Tensor],
        targets: Sequence[Mapping[str, torch.Tensor]] | None = None,
        output_sizes: Sequence[tuple[int, int]] | None = None,
    ):
        """Training: the loss dict for ``images`` and ``targets``. Eval: one prediction dict per
        image, at ``output_sizes`` (default: each image's own size; no resizing of inputs)."""
        batch = self.preprocess(images)
        if self.training:
            if targets is None:
                raise ValueError("training mode needs targets; call model.eval() to predict")
            return self.compute_losses(batch, [self._training_target(t) for t in targets])
        detections = self.detect(batch)
        sizes = output_sizes if output_sizes is not None else batch.image_sizes
        return [
            self.postprocess(d, in_size, tuple(int(v) for v in out_size))
            for d, in_size, out_size in zip(detections, batch.image_sizes, sizes)
        ]

    def postprocess(
        self,
        detection: dict[str, torch.Tensor],
        input_size: tuple[int, int],
        output_size: tuple[int, int],
    ) -> dict:
        """One image's prediction dict at ``output_size`` (``(height, width)``) from what
        :meth:`detect` gave for it at ``input_size``: boxes, keypoints and masks rescaled
        (:func:`~detzoo.models.postprocess.rescale_detections`). Models with other outputs
        (semantic logits, panoptic segments) override this."""
        return rescale_detections(detection, input_size, output_size)

    def _training_target(self, target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drops crowd regions (Detectron2 trains without them) and moves tensors to the device.
        Per-instance fields are the tensors with one row per instance and the lists named in
        :data:`PER_INSTANCE_LISTS` (``polygons``: one list of polygons per instance)."""
        out = {
            k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in target.items()
        }
        if "iscrowd" in out and len(out["iscrowd"]):
            keep = out["iscrowd"] == 0
            n = len(keep)
            for key, value in list(out.items()):
                if (
                    isinstance(value, torch.Tensor)
                    and value.dim() >= 1
                    and len(value) == n
                    and key != "iscrowd"
                    and key not in IMAGE_FIELDS
                ):
                    out[key] = value[keep]
            for key in PER_INSTANCE_LISTS:
                if key in out:
                    out[key] = [v for v, k in zip(out[key], keep.tolist()) if k]
            out["iscrowd"] = out["iscrowd"][keep]
        return out

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        self._skipped_train.add(batch)
        if not images:  # every image of the batch was skipped (corrupt files)
            # a zero loss on every trainable parameter keeps DDP's gradient all-reduce in step
            return sum(p.sum() * 0.0 for p in self.parameters() if p.requires_grad)
        losses = self(images, targets)
        for name, value in losses.items():
            if not torch.isfinite(value).all():
                raise FloatingPointError(
                    f"loss term {name} became {value.item()} at step {self.global_step}: training "
                    f"diverged (all terms: { {k: float(v) for k, v in losses.items()} }); lower the "
                    f"learning rate or lengthen the warm-up"
                )
        total = sum(losses.values())
        batch_size = len(images)
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        self.log("train/loss", total, prog_bar=True, batch_size=batch_size)
        return total

    def on_train_epoch_end(self) -> None:
        skipped = self._skipped_train.report(f"training epoch {self.current_epoch}")
        self.log("train/skipped_images", float(skipped), rank_zero_only=True)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        """Predictions at each image's original size (``orig_size`` of its target when given)."""
        images, targets = batch
        sizes = [
            tuple(t["orig_size"]) if t and "orig_size" in t else tuple(im.shape[-2:])
            for im, t in zip(images, targets)
        ]
        return self(images, output_sizes=sizes)

    # ---- evaluation ------------------------------------------------------------------------
    def build_evaluators(self) -> list:
        """Fresh evaluators for one validation/test run: COCO AP on :attr:`eval_iou_types`, per
        class when the evaluated dataset has ``class_names``; for LVIS datasets (recognised by
        their ``category_frequency``, one ``"r"``/``"c"``/``"f"`` per label) LVIS's federated AP
        instead (:class:`~detzoo.evaluation.LVISEvaluator`, with APr/APc/APf and
        :data:`LVIS_MAX_DETS_PER_IMAGE` detections per image), as Detectron2 picks its
        ``LVISEvaluator`` for LVIS datasets; keypoint AP (OKS) when they include
        ``"keypoints"``, with the dataset's ``keypoint_oks_sigmas`` when it has them (else COCO's
        17 person sigmas). When :attr:`results_dir` is set, a
        :class:`~detzoo.evaluation.CocoResultsWriter` writes ``coco_instances_results.json``
        there (``lvis_instances_results.json`` for LVIS datasets, recognised by their
        ``category_frequency``), with the dataset's category ids. Override to add others."""
        box_types = tuple(t for t in self.eval_iou_types if t != "keypoints")
        frequencies = self._eval_dataset_attribute("category_frequency")
        if frequencies is not None:
            evaluators: list = [
                LVISEvaluator(
                    frequencies,
                    box_types,
                    class_names=self._eval_class_names(),
                    max_dets_per_image=LVIS_MAX_DETS_PER_IMAGE,
                )
            ]
        else:
            evaluators = [CocoEvaluator(box_types, class_names=self._eval_class_names())]
        if "keypoints" in self.eval_iou_types:
            sigmas = self._eval_dataset_attribute("keypoint_oks_sigmas")
            evaluators.append(KeypointEvaluator(sigmas))
        if self.results_dir is not None:
            is_lvis = self._eval_dataset_attribute("category_frequency") is not None
            name = LVIS_RESULTS_FILE if is_lvis else COCO_RESULTS_FILE
            evaluators.append(
                CocoResultsWriter(
                    Path(self.results_dir) / name,
                    self._eval_category_ids("thing_dataset_id_to_contiguous_id"),
                    # the offset the keypoint reader added to the file's coordinates
                    keypoint_offset=self._eval_dataset_attribute("keypoint_offset") or 0.0,
                )
            )
        return evaluators

    def _eval_dataset_attribute(self, attribute: str):
        """``attribute`` of the evaluated dataset: the data module's test dataset while testing,
        else its val dataset; the other one when that lacks it."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        names = ["val_dataset", "test_dataset"]
        if self._trainer is not None and self._trainer.testing:
            names.reverse()
        for name in names:
            value = getattr(getattr(datamodule, name, None), attribute, None)
            if value is not None:
                return value
        return None

    def _eval_category_ids(self, attribute: str, first_label: int = 0) -> list[int] | None:
        """The dataset category ids of the labels ``first_label, ...`` from the evaluated
        dataset's category id -> label map ``attribute`` (``thing_dataset_id_to_contiguous_id``,
        ...; see :func:`~detzoo.evaluation.results_file.category_ids_by_label`); None when the
        dataset has none."""
        mapping = self._eval_dataset_attribute(attribute)
        return category_ids_by_label(mapping, first_label) if mapping is not None else None

    def _eval_class_names(self) -> list[str] | None:
        names = self._eval_dataset_attribute("class_names")
        if names is not None and len(names) == getattr(self, "num_classes", None):
            return list(names)
        return None

    def _evaluate_batch(self, batch: Batch) -> None:
        images, targets = batch
        self._skipped_eval.add(batch)
        if not images:  # every image of the batch was skipped (corrupt files)
            return
        for i, target in enumerate(targets):
            if "orig_size" not in target:
                raise ValueError(
                    f"evaluation target {i} has no 'orig_size' (H, W); evaluation needs the "
                    f"original image size of every target (detzoo datasets set it)"
                )
            masks = target.get("masks")
            if masks is not None and tuple(masks.shape[-2:]) != tuple(target["orig_size"]):
                raise ValueError(
                    f"evaluation target {i} has masks of size {tuple(masks.shape[-2:])} but "
                    f"orig_size {tuple(target['orig_size'])}: evaluation targets must stay in the "
                    f"original image frame (use detzoo.data.build_test_transforms)"
                )
        preds = self.predict_step(batch, 0)
        for evaluator in self._evaluators:
            evaluator.update(preds, targets)

    def _finish_evaluation(self, prefix: str) -> dict[str, float]:
        results: dict[str, float] = {}
        for evaluator in self._evaluators:
            results.update(evaluator.compute())
        self._evaluators = []
        # Every rank computed the same numbers from the gathered predictions: the sync (a mean of
        # equal values) changes nothing and tells Lightning the values are global.
        self.log_dict({f"{prefix}/{k}": v for k, v in results.items()}, sync_dist=True)
        rank_zero_info(f"{prefix} results:\n{format_metrics_table(results)}")
        skipped = self._skipped_eval.report(f"{prefix} evaluation")
        self.log(f"{prefix}/skipped_images", float(skipped), rank_zero_only=True)
        return results

    def on_fit_start(self) -> None:
        # Lightning >= 2.6 trains modules in the mode they are in (it only warns): a model from
        # detzoo.zoo.get, or one that has predicted, is in eval mode and would return predictions
        if not self.training:
            self.train()

    def on_validation_epoch_start(self) -> None:
        self._evaluators = self.build_evaluators()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate_batch(batch)

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self._evaluators = self.build_evaluators()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate_batch(batch)

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")

    def configure_optimizers(self):
        optimizer, scheduler = self.solver.build(self)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _rng_states() -> dict:
    """The global random states, as tensors and plain values (``torch.load(weights_only=True)``
    reads them back)."""
    # the legacy global numpy generator, which seed_everything seeds and libraries may draw from
    kind, keys, position, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
