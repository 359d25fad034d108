"""hwgen.hw"""
