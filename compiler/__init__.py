"""hwgen.compiler"""
