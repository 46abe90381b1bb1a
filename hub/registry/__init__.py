"""The agency registry (Art. 21): agencies, their data administrators and designated reviewers."""
