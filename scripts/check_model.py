# Opens a dainet model with the Python safetensors package and scores it with numpy.
import gzip, sys
import numpy as np
from safetensors.numpy import load_file

model, images, labels = sys.argv[1:4]
t = load_file(model)
x = np.frombuffer(gzip.open(images).read()[16:], np.uint8).reshape(-1, 784)[8000:].astype(np.float32) / 255
y = np.frombuffer(gzip.open(labels).read()[8:], np.uint8)[8000:]
h = x
n = len([k for k in t if k.endswith(".weight")])
for l in range(n):
    h = h @ t[f"dense{l}.weight"] + t[f"dense{l}.bias"]
    if l < n - 1:
        h = np.maximum(h, 0)
print(f"numpy accuracy on the 2,000 test digits: {(h.argmax(1) == y).mean():.4f}")
