"""Conditional generation diagnostics: does a decoder generate what its label asks for?"""
