"""Factories for evidence files in tests: the same generators `evidence demo` uses."""

from flows.simulate import (
    DEFAULT_TAKEN,
    DEFAULT_VIDEO_TIME,
    DEVICE_FOLDER,
    make_device,
    make_jpeg,
    make_mp4,
    random_file,
    video_codec,
)

__all__ = [
    "DEFAULT_TAKEN",
    "DEFAULT_VIDEO_TIME",
    "DEVICE_FOLDER",
    "make_device",
    "make_jpeg",
    "make_mp4",
    "random_file",
    "video_codec",
]
