"""Dense peak FLOP/s of accelerators, for MFU (model FLOPs utilisation).

Vendor datasheet figures, dense (no 2:4 sparsity), by `device_kind` as JAX
reports it ('NVIDIA H100 80GB HBM3', 'NVIDIA H200', 'NVIDIA A100-SXM4-80GB').
float32 has two peaks: 'float32' the CUDA cores' (no tensor cores) and
'tf32' the tensor cores' on float32 inputs, which cuDNN convolutions use by
default in both frameworks (PyTorch's torch.backends.cudnn.allow_tf32 and
XLA's default precision); MFU of a float32 run is taken against 'tf32',
the peak that run can reach. Pure, stdlib only (tools/gpu_check.py runs
before any virtual environment exists).
"""

# (substring of device_kind, {dtype: TFLOP/s}); the first match wins, so a
# more specific name comes before a shorter one.
PEAKS_TFLOPS = (
    ('H100 PCIe', {'bfloat16': 756.0, 'tf32': 378.0, 'float32': 51.0}),
    ('H100', {'bfloat16': 989.0, 'tf32': 494.0, 'float32': 67.0}),  # SXM
    ('H200', {'bfloat16': 989.0, 'tf32': 494.0, 'float32': 67.0}),
    ('A100', {'bfloat16': 312.0, 'tf32': 156.0, 'float32': 19.5}),
)

# The peak a run of each compute dtype is measured against.
MFU_PEAK_OF = {'float32': 'tf32', 'bfloat16': 'bfloat16'}


def peak_flops(device_kind, dtype):
  """(FLOP/s, which peak) for a compute dtype ('float32' or 'bfloat16') on
  `device_kind`; (None, None) for a device not in the table."""
  peak_name = MFU_PEAK_OF[dtype]
  for name, peaks in PEAKS_TFLOPS:
    if name.lower() in (device_kind or '').lower():
      return peaks[peak_name] * 1e12, f'{name} {peak_name}'
  return None, None


def mfu(flops_per_step, seconds_per_step, device_kind, dtype):
  """Model FLOPs per second over the device's peak for `dtype`; None when
  the device or a figure is unknown."""
  peak, _ = peak_flops(device_kind, dtype)
  if not peak or not flops_per_step or not seconds_per_step:
    return None
  return flops_per_step / seconds_per_step / peak
