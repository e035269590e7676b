"""Feature-based metrics: FID, FVD (Frechet distances) and LPIPS, from weight files the user gives.

No weights ship with the package, and none are faked: without the file, the metric is reported as
unavailable with the file it needs.

  FID    Inception-v3 pool features (2048-d) of every generated and every ground-truth frame; a
         TorchScript Inception in the clean-fid / StyleGAN3 convention: called as
         model(x, return_features=True) on float (N, 3, 299, 299) in [0, 255]
         (file: inception-2015-12-05.pt)
  FVD    I3D features of 16-frame clips; the StyleGAN-V TorchScript convention: called as
         model(x, rescale=False, resize=False, return_features=True) on (N, 3, 16, 224, 224) in [-1, 1]
         (file: i3d_torchscript.pt)
  LPIPS  AlexNet features (torchvision's alexnet-owt-7be5be79.pth, state dict) with the LPIPS
         v0.1 linear heads (the lpips package's weights/v0.1/alex.pth); both read with
         torch.load(weights_only=True). Per frame, averaged; 0 for identical frames.

Frechet distance: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    from scipy import linalg

    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():
        eps = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _need(path: str | None, what: str, file: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} weights not found: {p} (expected {file})")
    return p


class TorchScriptFeatures:
    def __init__(self, path: Path, kind: str, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        try:
            self.model = torch.jit.load(str(path), map_location=self.device).eval()
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"cannot load {kind} TorchScript from {path}: {str(exc).splitlines()[0]}") from None
        self.kind = kind

    @torch.no_grad()
    def frames(self, frames: np.ndarray, batch: int = 16) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, 2048) Inception features."""
        out = []
        for i in range(0, len(frames), batch):
            x = torch.from_numpy(frames[i:i + batch]).permute(0, 3, 1, 2).float().to(self.device)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            out.append(self.model(x, return_features=True).reshape(len(x), -1).cpu().numpy())
        return np.concatenate(out)

    @torch.no_grad()
    def clips(self, frames: np.ndarray, length: int = 16) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (number of 16-frame clips, D) I3D features (a shorter video is
        padded by repeating its last frame)."""
        if len(frames) < length:
            frames = np.concatenate([frames, np.repeat(frames[-1:], length - len(frames), axis=0)])
        feats = []
        for s in range(0, len(frames) - length + 1, length):
            x = torch.from_numpy(frames[s:s + length]).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(self.device)
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
            x = x.permute(1, 0, 2, 3)[None]  # (1, 3, T, 224, 224)
            feats.append(self.model(x, rescale=False, resize=False, return_features=True).reshape(1, -1).cpu().numpy())
        return np.concatenate(feats)


class LPIPS(nn.Module):
    """LPIPS v0.1 with the AlexNet backbone (Zhang et al. 2018)."""

    CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self, alexnet_path: Path, lin_path: Path):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )
        self.taps = (1, 4, 7, 9, 11)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        try:
            alex = torch.load(str(alexnet_path), map_location="cpu", weights_only=True)
            lins = torch.load(str(lin_path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise InputError(f"cannot read LPIPS weights ({alexnet_path}, {lin_path}): {exc}") from None
        feats = {k[len("features."):]: v for k, v in alex.items() if k.startswith("features.")}
        self.features.load_state_dict(feats)
        self.lins.load_state_dict({f"{i}.weight": lins[f"lin{i}.model.1.weight"] for i in range(5)})
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: (N, 3, H, W) in [-1, 1] -> (N,) distances."""
        fa, fb = self._taps((a - self.shift) / self.scale), self._taps((b - self.shift) / self.scale)
        return sum(lin((x - y) ** 2).mean(dim=(2, 3)).flatten() for lin, x, y in zip(self.lins, fa, fb))

    def frames(self, gen: np.ndarray, truth: np.ndarray) -> float:
        device = self.shift.device

        def t(x):
            return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)

        return float(torch.cat([self(t(gen[i:i + 8]), t(truth[i:i + 8])) for i in range(0, len(gen), 8)]).mean())


class FeatureMetrics:
    """The three weight-dependent metrics; each is None (unavailable) without its file."""

    def __init__(self, inception: str | None = None, i3d: str | None = None, lpips_alexnet: str | None = None,
                 lpips_lin: str | None = None, device: str | torch.device = "cpu"):
        p = _need(inception, "Inception (FID)", "a TorchScript inception-2015-12-05.pt")
        self.inception = TorchScriptFeatures(p, "Inception", device) if p else None
        p = _need(i3d, "I3D (FVD)", "a TorchScript i3d_torchscript.pt")
        self.i3d = TorchScriptFeatures(p, "I3D", device) if p else None
        a = _need(lpips_alexnet, "AlexNet (LPIPS)", "torchvision's alexnet-owt-7be5be79.pth")
        lin = _need(lpips_lin, "LPIPS heads", "lpips' weights/v0.1/alex.pth")
        self.lpips = LPIPS(a, lin).to(device) if a and lin else None

    def missing(self) -> dict[str, str]:
        out = {}
        if self.inception is None:
            out["FID"] = "unavailable: pass --inception inception-2015-12-05.pt (TorchScript)"
        if self.i3d is None:
            out["FVD"] = "unavailable: pass --i3d i3d_torchscript.pt (TorchScript, StyleGAN-V)"
        if self.lpips is None:
            out["LPIPS"] = ("unavailable: pass --lpips-alexnet alexnet-owt-7be5be79.pth and "
                            "--lpips-lin alex.pth (lpips v0.1)")
        return out
