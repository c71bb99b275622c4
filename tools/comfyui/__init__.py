"""The user's own ComfyUI as a render backend (`worker.backend: comfyui`, docs/COMFYUI.md)."""
