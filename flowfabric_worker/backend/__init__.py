"""The only layer that talks to Redis: connections, library loading and the
FCALL transport."""
