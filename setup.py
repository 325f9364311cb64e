"""Package metadata for atoll."""

import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
# the version is written once, in atoll/_version.py (read as text: importing atoll needs its dependencies)
version = re.search(r'^__version__ = "([^"]+)"$',
                    (here / "atoll" / "_version.py").read_text(encoding="utf-8"), flags=re.M).group(1)

extras = {
    "spark": ["pyspark>=3.5,<5"],
    "service": [
        "flask>=3.0,<4",
        "gunicorn>=21,<28",
        "celery>=5.4,<6",
        "kombu>=5.4,<6",
        "requests>=2.31,<3",
        "prometheus_client>=0.20,<1",
        "flask-limiter>=4.0,<5",
    ],
    "s3": ["s3fs>=2023.1"],
    "client": ["requests>=2.31,<3"],
    "flower": ["flower>=2.0,<3"],
    "numpy": ["numpy>=1.24"],
    "fast": ["orjson>=3.9,<4"],
    "redis": ["redis>=4.5,<9"],
    "docs": ["sphinx>=7,<10"],
}
extras["test"] = sorted(set(
    extras["spark"] + extras["service"] + extras["numpy"] + extras["docs"] + extras["fast"]
    + extras["redis"] + extras["s3"] + [
        "pytest>=7,<10",
        "pytest-timeout>=2.1,<3",
        "hypothesis>=6.80,<7",
        "psutil>=5.9,<8",
        "openapi-spec-validator>=0.7,<1",
        "schemathesis>=3.30,<5",
        "standardwebhooks>=1.0,<2",
        "sqlalchemy>=2.0,<3",
        "playwright>=1.40,<2",
        "ruff>=0.4",
        "build>=1.0,<2",
        "import-linter>=2.1,<3",
        "moto[server]>=5,<6",
    ]))
extras["all"] = sorted(set(sum((v for k, v in extras.items() if k != "test"), [])))

setup(
    name="atoll",
    version=version,
    description="Plain Python functions as data-analysis pipelines: serial, parallel, on Spark, "
                "and served over HTTP",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    license_files=["LICENSE"],
    python_requires=">=3.10",
    packages=find_packages(include=["atoll", "atoll.*"]),
    package_data={"atoll.service": ["ui_files/*.html", "ui_files/*.css", "ui_files/*.js"]},
    install_requires=[
        "joblib>=1.3,<2",
        "cloudpickle>=2.2,<4",
        "dill>=0.3.6,<0.5",
        "pyyaml>=6,<7",
        "tqdm>=4.60,<5",
        "fsspec>=2023.1",
    ],
    extras_require=extras,
    entry_points={"console_scripts": ["atoll=atoll.cli:main"]},
    classifiers=[
        "Development Status :: 4 - Beta",
        "Operating System :: POSIX",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Framework :: Celery",
        "Framework :: Flask",
        "Topic :: Scientific/Engineering :: Information Analysis",
    ],
)
