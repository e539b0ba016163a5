"""Typed genetic programming: primitive set, genome format, numba VM.

Public API: ``Genome`` (versioned JSON), ``build_pset`` / ``Operators`` /
``generate`` (DEAP side), ``genome_from_individual`` /
``individual_from_genome``, ``compile_program`` / ``run_program`` /
``BufferPool`` (VM), ``deap_compile_function`` (baseline/reference).
"""

from forge.gp import pset
from forge.gp.genome import Genome, parse_tokens
from forge.gp.primitives import PRIMITIVES, PSET_VERSION, WINDOWS
from forge.gp.pset import (
    Operators,
    build_pset,
    deap_compile_function,
    generate,
    genome_from_individual,
    individual_tokens,
    individual_from_genome,
)
from forge.gp.vm import BufferPool, Program, compile_program, run_program

__all__ = [
    "PRIMITIVES",
    "PSET_VERSION",
    "WINDOWS",
    "BufferPool",
    "Genome",
    "Operators",
    "Program",
    "build_pset",
    "compile_program",
    "deap_compile_function",
    "generate",
    "genome_from_individual",
    "individual_tokens",
    "individual_from_genome",
    "parse_tokens",
    "pset",
    "run_program",
]
