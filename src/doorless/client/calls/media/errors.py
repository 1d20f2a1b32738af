"""Errors of call media, in the one tree of `doorless.errors`.

::

    DoorlessError
     ├── LocalError
     │    ├── ConfigurationError
     │    │    └── MediaConfigError       a codec setting or an argument is invalid (wrong PCM
     │    │                               length, unknown container, bitrate out of range)
     │    └── StateError
     │         └── AudioDeviceUnavailable no PortAudio, no default microphone or speaker
     └── RemoteError
          └── DecodeError
               ├── MediaFrameError         a media frame (the plaintext inside SFrame) is malformed
               ├── CodecDecodeError        an Opus/VP8 packet the decoder rejects
               └── MediaFileError          a file that is not readable media of the expected kind

FFmpeg's own exceptions (``av.FFmpegError``) never escape this package: they are translated
here, at the codec and file boundary.
"""

from __future__ import annotations

from doorless.errors import ConfigurationError, DecodeError, StateError


class MediaConfigError(ConfigurationError):
    """A media setting or argument is invalid."""


class AudioDeviceUnavailable(StateError):
    """The machine has no usable microphone or speaker (no PortAudio, no default device)."""


class MediaFrameError(DecodeError):
    """Bytes are not a valid media frame, or break a frame rule (size, flags)."""


class CodecDecodeError(DecodeError):
    """The Opus or VP8 decoder rejected a packet."""


class MediaFileError(DecodeError):
    """A file cannot be read as media of the expected kind."""


__all__ = [
    "AudioDeviceUnavailable",
    "CodecDecodeError",
    "MediaConfigError",
    "MediaFileError",
    "MediaFrameError",
]
