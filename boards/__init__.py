"""hwgen.boards"""
