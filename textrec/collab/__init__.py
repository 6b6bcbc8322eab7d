"""Readers' signals: the event log and the collaborative sources built on it.

``events`` (what an event is, checked and read from files), ``readers`` (“readers also
read”: MinHash signatures of each document's readers in a real-time secondary index).
"""
