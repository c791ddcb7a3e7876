"""Problems in, problems out: the data layer of oreal.

Every source becomes a list of :class:`Problem` (``id``, ``question``, ``answer``, ``metadata``):
the bundled benchmarks and training sets (:func:`load_benchmark`, :func:`list_benchmarks`),
the user's files and Hugging Face datasets, and seeded synthetic tasks, all reachable through
one source string with :func:`load_problems`. :func:`render_prompt` turns a problem into the
prompt that both the trainer and the evaluator use. Importing this package is cheap: pyarrow
and ``datasets`` are imported only when a Parquet file or HF dataset is read.
"""

from oreal.data.benchmarks import (
    BenchmarkInfo,
    benchmark_names,
    extract_last_boxed,
    list_benchmarks,
    load_benchmark,
)
from oreal.data.loaders import load_problems, problems_from_rows
from oreal.data.records import DataError, Problem, canonical_answer, canonical_number
from oreal.data.synthetic import (
    in_split,
    load_synthetic,
    make_arithmetic,
    make_word_problems,
    parse_synthetic_spec,
)
from oreal.data.templates import (
    COT_INSTRUCTION,
    PromptTemplate,
    TemplateError,
    build_messages,
    get_template,
    list_templates,
    render_prompt,
)

__all__ = [
    "COT_INSTRUCTION",
    "BenchmarkInfo",
    "DataError",
    "Problem",
    "PromptTemplate",
    "TemplateError",
    "benchmark_names",
    "build_messages",
    "canonical_answer",
    "canonical_number",
    "extract_last_boxed",
    "get_template",
    "in_split",
    "list_benchmarks",
    "list_templates",
    "load_benchmark",
    "load_problems",
    "load_synthetic",
    "make_arithmetic",
    "make_word_problems",
    "parse_synthetic_spec",
    "problems_from_rows",
    "render_prompt",
]
