"""hwgen.sim"""
