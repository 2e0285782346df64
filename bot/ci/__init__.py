"""What CI printed, made fit for an agent; pure, no I/O.

`logs` turns a job log (tens of MB, streamed) into an excerpt of its error
lines and their surroundings; `classify` names the kind of failure.
"""
