"""timbrescribe: multi-instrument music transcription, one MIDI track per instrument.

    import timbrescribe
    result = timbrescribe.transcribe("song.wav")
    result.write_midi("song.mid")
"""

__all__ = ["Transcription", "transcribe"]


def __getattr__(name):
    # Imported on first use so that every CLI command does not pay for the audio stack.
    if name in __all__:
        from timbrescribe import transcription

        return getattr(transcription, name)
    raise AttributeError(f"module 'timbrescribe' has no attribute {name!r}")
