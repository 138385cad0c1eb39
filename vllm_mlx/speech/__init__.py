"""Speech: audio decoding/encoding (PyAV's bundled FFmpeg, no system ffmpeg), the speech
engine thread, transcription windows and subtitle formats."""
