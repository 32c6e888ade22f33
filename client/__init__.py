"""Clients of a running server: the Python client and its command line, the container health
check, the contact sheet. No torch, dlib or PyAV."""
