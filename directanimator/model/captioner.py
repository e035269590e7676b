"""Captions from a vision-language model (Qwen2-VL or Qwen2.5-VL) in a local Hugging Face folder.

The paper captions every clip with Qwen2-VL, and CogVideoX was trained on dense captions. The
caption describes the person's appearance and the scene, not the motion (the cues carry it): the
prompt is `data.caption_prompt`. Used by `directanimator caption` (a dataset's clips, a few frames
each) and by `animate --caption-model` (the reference photo).

Loaded with transformers' own classes (`AutoModelForImageTextToText`, `AutoTokenizer`, and
`Qwen2VLImageProcessorPil`, the image processor both model families use). The combined
`Qwen2VLProcessor` needs torchvision for its video part, which this project does not install, so the
chat prompt is built here: one `<|image_pad|>` per merged patch of each image, between
`<|vision_start|>` and `<|vision_end|>`, as the processor writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

NEEDED = ("config.json", "preprocessor_config.json")


def check_caption_model(path: str | Path | None) -> Path:
    if path is None:
        raise InputError("captioning needs a vision-language model folder: pass --model PATH (or --caption-model) "
                         "with a Qwen2-VL or Qwen2.5-VL checkpoint in the Hugging Face layout (config.json, "
                         "*.safetensors, tokenizer files, preprocessor_config.json), e.g. Qwen/Qwen2-VL-7B-Instruct "
                         "downloaded beforehand; nothing is downloaded")
    p = Path(path)
    missing = [n for n in NEEDED if not (p / n).is_file()]
    if not p.is_dir() or missing:
        raise InputError(f"{p} is not a Qwen2-VL folder: missing {', '.join(missing) or 'the folder'}")
    return p


class Captioner:
    """`captioner([[frames of item 1], [frames of item 2], ...])` -> one caption per item (greedy)."""

    def __init__(self, path: str | Path | None, prompt: str, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, max_new_tokens: int = 60, image_side: int = 448):
        from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessorPil

        path = check_caption_model(path)
        self.prompt, self.max_new_tokens, self.image_side = prompt, max_new_tokens, image_side
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        self.images = Qwen2VLImageProcessorPil.from_pretrained(path)
        self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.merge = int(self.model.config.vision_config.spatial_merge_size)

    def _image(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        k = self.image_side / max(frame.shape[:2])
        if k < 1:
            frame = cv2.resize(frame, (max(28, round(frame.shape[1] * k)), max(28, round(frame.shape[0] * k))),
                               interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(frame)

    def _text(self, grids: torch.Tensor) -> str:
        vision = "".join("<|vision_start|>" + "<|image_pad|>" * (int(g.prod()) // self.merge ** 2) + "<|vision_end|>"
                         for g in grids)
        return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                f"{vision}{self.prompt}<|im_end|>\n<|im_start|>assistant\n")

    @torch.no_grad()
    def __call__(self, items: list[list[np.ndarray]]) -> list[str]:
        if not items or any(not frames for frames in items):
            raise ValueError("every item needs at least one frame")
        flat = [self._image(f) for frames in items for f in frames]
        vis = self.images(images=flat, return_tensors="pt")
        grids = vis["image_grid_thw"]
        texts, k = [], 0
        for frames in items:
            texts.append(self._text(grids[k:k + len(frames)]))
            k += len(frames)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True)
        out = self.model.generate(input_ids=enc["input_ids"].to(self.device),
                                  attention_mask=enc["attention_mask"].to(self.device),
                                  pixel_values=vis["pixel_values"].to(self.device, self.model.dtype),
                                  image_grid_thw=grids.to(self.device), max_new_tokens=self.max_new_tokens,
                                  do_sample=False)
        new = out[:, enc["input_ids"].shape[1]:]
        return [" ".join(t.split()) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
