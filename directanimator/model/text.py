"""Text conditioning: a frozen T5 encoder from a local folder, with a prompt cache, or a null prompt.

The paper captions its clips with Qwen2-VL and encodes them with CogVideoX's T5. Tiny configs have
no text encoder: every sample gets the same null-prompt embedding (zeros), which makes the text
branch a constant the model learns around. A pretrained CogVideoX never saw zeros: without a text
encoder path it gets T5 of its fixed prompt ("" by default, std ~0.94, not zeros), computed once with
the model folder's own T5 and cached on disk (`CachedPrompt`), so the 4.7 GB T5 is not loaded again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import InputError


class NullPrompt:
    """Zeros of shape (1, length, dim), whatever the prompt."""

    def __init__(self, length: int, dim: int):
        self.length, self.dim = length, dim

    def __call__(self, prompts: list[str] | str, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        n = 1 if isinstance(prompts, str) else len(prompts)
        return torch.zeros(n, self.length, self.dim, device=device, dtype=dtype)


class SentencePieceT5Tokenizer:
    """T5's tokenization straight from `spiece.model` with the sentencepiece library: the pieces of
    the text, then `</s>` (id 1), truncated to `max_length` and padded with `<pad>` (id 0), as
    transformers' T5 tokenizer does for plain prompts. transformers 5 instead converts `spiece.model`
    through sentencepiece's protobuf module, which needs protobuf >= 5, while MediaPipe 0.10.21 needs
    protobuf < 5: with this project's pins the real CogVideoX `tokenizer/` folder would not load."""

    pad_id, eos_id = 0, 1

    def __init__(self, model_file: str | Path):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))

    def __call__(self, prompt: str, max_length: int) -> torch.Tensor:
        ids = list(self.sp.encode(prompt, out_type=int))[: max_length - 1] + [self.eos_id]
        return torch.tensor([ids + [self.pad_id] * (max_length - len(ids))])


def prompt_key(max_length: int, prompt: str) -> str:
    """The cache file name of a prompt's embedding."""
    return hashlib.sha256(f"{max_length}\0{prompt}".encode()).hexdigest()[:32]


class _Prompts:
    """`__call__(prompts)` -> (N, length, dim) from the subclass's `_embed(prompt)` (1 x length x dim)."""

    def _embed(self, prompt: str) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, prompts: list[str] | str, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        prompts = [prompts] if isinstance(prompts, str) else prompts
        return torch.stack([self._embed(p) for p in prompts]).to(device, dtype)


class T5PromptEncoder(_Prompts):
    """CogVideoX's text encoder (T5 v1.1 XXL) from a local folder holding `text_encoder/` and
    `tokenizer/` (the CogVideoX model folder) or both files directly. Frozen; each prompt is encoded
    once and cached in memory, and on disk as safetensors when `cache_dir` is given."""

    model_class = "T5EncoderModel"
    checkpoint = "the CogVideoX1.5-5B-I2V folder"

    def __init__(self, path: str | Path, max_length: int = 226, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, cache_dir: str | Path | None = None):
        from transformers import AutoTokenizer

        path = Path(path)
        enc_dir = path / "text_encoder" if (path / "text_encoder").is_dir() else path
        tok_dir = path / "tokenizer" if (path / "tokenizer").is_dir() else path
        if not (enc_dir / "config.json").is_file():
            raise InputError(
                f"no T5 text encoder at {path}: expected {path}/text_encoder/config.json with its "
                f"safetensors weights and {path}/tokenizer/ ({self.checkpoint})"
            )
        try:
            if (tok_dir / "spiece.model").is_file():
                self.tokenizer = SentencePieceT5Tokenizer(tok_dir / "spiece.model")
            else:
                hf = AutoTokenizer.from_pretrained(str(tok_dir))
                self.tokenizer = lambda prompt, max_length: hf(
                    prompt, padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
                    return_tensors="pt").input_ids
            self._enc_dir, self._dtype = enc_dir, dtype
            self.model = None
            self._load_model(device)
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"cannot load the T5 encoder from {path}: {str(exc).splitlines()[0]}") from None
        self.max_length = max_length
        self.device = device
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._cache: dict[str, torch.Tensor] = {}

    def _load_model(self, device) -> None:
        import transformers

        cls = getattr(transformers, self.model_class)
        self.model = cls.from_pretrained(str(self._enc_dir), torch_dtype=self._dtype, use_safetensors=True)
        self.model.requires_grad_(False).eval().to(device)

    def _encode(self, prompt: str) -> torch.Tensor:
        """(max_length, dim): CogVideoX's T5 sees the padded ids without a mask, as its pipelines run it."""
        return self.model(self.tokenizer(prompt, self.max_length).to(self.device))[0][0]

    def release(self) -> None:
        """Free the T5 weights (4.8 B parameters: 9.5 GB in bf16) once the prompts are encoded; the
        encoded prompts stay cached, and a new prompt loads the model again."""
        import gc

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @torch.no_grad()
    def _embed(self, prompt: str) -> torch.Tensor:
        key = prompt_key(self.max_length, prompt)
        if key in self._cache:
            return self._cache[key]
        file = self.cache_dir / f"{key}.safetensors" if self.cache_dir else None
        if file is not None and file.is_file():
            from safetensors.torch import load_file

            emb = load_file(str(file))["prompt_embeds"]
        else:
            if self.model is None:  # released after an earlier prompt
                self._load_model(self.device)
            emb = self._encode(prompt).float().cpu()
            if file is not None:
                from safetensors.torch import save_file

                from ..storage import atomic_write

                file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(file, lambda tmp: save_file({"prompt_embeds": emb.contiguous()}, str(tmp)))
        self._cache[key] = emb
        return emb


class UMT5PromptEncoder(T5PromptEncoder):
    """Wan's text encoder (UMT5-XXL's encoder, 512 tokens) from a Wan folder's `text_encoder/` and
    `tokenizer/`, as diffusers' Wan pipelines encode a prompt: cleaned (ftfy, HTML entities,
    whitespace), the ids with their attention mask, and the states past the prompt's own tokens set
    to zero."""

    model_class = "UMT5EncoderModel"
    checkpoint = "a Wan2.1-I2V or Wan2.2-TI2V diffusers folder"
    default_length = 512  # the length Wan was trained with (diffusers' max_sequence_length)

    def __init__(self, path: str | Path, max_length: int = default_length, **kwargs):
        super().__init__(path, max_length, **kwargs)

    def _encode(self, prompt: str) -> torch.Tensor:
        try:
            from diffusers.pipelines.wan.pipeline_wan_i2v import prompt_clean

            prompt = prompt_clean(prompt)
        except NameError:  # diffusers imports ftfy only when it is installed
            raise InputError("Wan prompts are cleaned with ftfy, as diffusers does: pip install -e \".[wan]\"") from None
        ids = self.tokenizer(prompt, self.max_length).to(self.device)
        mask = ids.ne(SentencePieceT5Tokenizer.pad_id).long()
        emb = self.model(ids, mask).last_hidden_state[0]
        return emb * mask[0, :, None].to(emb.dtype)


def prompt_cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "directanimator" / "prompts"


class CachedPrompt(_Prompts):
    """T5 embeddings of prompts for a pretrained model folder, from a disk cache keyed by the folder
    (its path and its T5 config) and the prompt; the folder's T5 (`encoder`: T5PromptEncoder, or
    UMT5PromptEncoder for Wan) is loaded only on a cache miss."""

    def __init__(self, folder: str | Path, max_length: int, device: str | torch.device = "cpu",
                 cache_dir: str | Path | None = None, encoder: type[T5PromptEncoder] = T5PromptEncoder):
        self.folder = Path(folder).resolve()
        enc_dir = self.folder / "text_encoder" if (self.folder / "text_encoder").is_dir() else self.folder
        config = enc_dir / "config.json"
        self._id = hashlib.sha256(str(self.folder).encode() + (config.read_bytes() if config.is_file() else b"")
                                  ).hexdigest()[:16]
        self.max_length = max_length
        self.device = device
        self.cache_dir = Path(cache_dir) if cache_dir else prompt_cache_dir() / self._id
        self._encoder: T5PromptEncoder | None = None
        self._encoder_class = encoder
        self._memory: dict[str, torch.Tensor] = {}

    def _embed(self, prompt: str) -> torch.Tensor:
        if prompt in self._memory:
            return self._memory[prompt]
        file = self.cache_dir / f"{prompt_key(self.max_length, prompt)}.safetensors"
        if file.is_file():
            from safetensors.torch import load_file

            emb = load_file(str(file))["prompt_embeds"]
        else:
            if self._encoder is None:
                self._encoder = self._encoder_class(self.folder, self.max_length, device=self.device,
                                                    cache_dir=self.cache_dir)
            emb = self._encoder([prompt])[0].float().cpu()
        self._memory[prompt] = emb
        return emb

    def release(self) -> None:
        """Drop the T5 it loaded on a cache miss (the embeddings stay)."""
        if self._encoder is not None:
            self._encoder.release()
        self._encoder = None
