"""The toy nets' input shape and class count (``toys`` re-exports them) and images of that size,
kept apart from torch so that the device-side tests use them on Pythons without it."""

SHAPE = (1, 3, 32, 64)
CLASSES = 4


def calibration_images(folder, count, seed=0):
    """``count`` 64x32 PNGs in ``folder``: smooth colour fields with edges, closer to scenes
    than white noise (what INT8 calibration and the precision checks read)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(count):
        base = rng.uniform(0, 255, (4, 8, 3))
        img = np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 8, (32, 64, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(f"{folder}/{i:02d}.png")
    return folder
