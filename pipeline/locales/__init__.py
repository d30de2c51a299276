"""Translations of the interface, one package per language; see pipeline/i18n.py."""
