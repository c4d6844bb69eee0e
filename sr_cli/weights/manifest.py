"""weights_manifest.json: every published weight set sr knows, typed and validated when read.

The JSON at the repository root is the one source of truth; the wheel ships a copy inside
`sr_cli/weights/` (setup.py's build_py hook). Reading it checks every field and raises ManifestError
naming the JSON path of the first bad one (`models[3].sources[0].revision: ...`), so a bad edit
fails loudly at the first `sr` call and in tests, never later with a confusing download error.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from sr_cli.archs.descriptor import FamilyName, HyperparameterError
from sr_cli.archs.families import FAMILY_NAMES, descriptor_for
from sr_cli.archs.runtime import AnyParams
from sr_cli.errors import ManifestError
from sr_cli.files.digest import ExpectedSha256

MANIFEST_NAME = "weights_manifest.json"
SUPPORTED_VERSION = 1

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA256_PREFIX = re.compile(r"[0-9a-f]{8,63}")
_REVISION = re.compile(r"[0-9a-f]{40}")
_HF_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")

VARIANTS = ("psnr", "gan")
PAIR_KINDS = ("interpolation", "denoise")
HF_REPO_TYPES = ("model", "dataset")


# --- the typed view ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubSource:
    """A file in a Hugging Face repository at a pinned commit."""

    repo: str
    filename: str
    revision: str
    repo_type: Literal["model", "dataset"] = "model"

    @property
    def kind(self) -> str:
        return "hf"

    def describe(self) -> str:
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return f"hf:{prefix}{self.repo}@{self.revision[:8]}/{self.filename}"


@dataclass(frozen=True)
class UrlSource:
    """A file at a plain https URL."""

    url: str

    @property
    def kind(self) -> str:
        return "url"

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class BundledSource:
    """A file shipped inside the package (`sr_cli/bundled/<filename>`), sha256-checked before use like any
    download. Its bytes may differ from the entry's file (realesrgan-x4plus: the fp16 conversion of the
    authors' ncnn export beside the fp32 .pth); its own sha256 and size are listed here."""

    filename: str
    sha256: str
    size: int

    @property
    def kind(self) -> str:
        return "bundled"

    def describe(self) -> str:
        return f"bundled:sr_cli/bundled/{self.filename}"


@dataclass(frozen=True)
class NcnnSource:
    """The authors' ncnn export (`NAME.param` + `NAME.bin`). Not downloadable by sr: `sr weights import NAME
    FILE.param` checks both files' sha256, converts them with sr's ncnn reader and stores the result, which
    must hash to the entry's sha256, or to its bundled copy's (the conversion is deterministic)."""

    param_filename: str  # NAME.param as published (its .bin is NAME.bin)
    param_sha256: str
    param_size: int
    bin_sha256: str
    bin_size: int
    origin: str  # where a user finds the pair (e.g. the registry wheel that carries it)

    @property
    def kind(self) -> str:
        return "ncnn"

    def describe(self) -> str:
        return f"ncnn:{self.origin}"


Source = HubSource | UrlSource | BundledSource | NcnnSource
DOWNLOADABLE = (HubSource, UrlSource)


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str
    venue: str
    arxiv: str | None


@dataclass(frozen=True)
class Metric:
    """A published benchmark figure (PSNR/SSIM on Y unless the source says otherwise)."""

    dataset: str
    scale: int
    psnr: float
    ssim: float | None
    source: str


@dataclass(frozen=True)
class Pair:
    """The partner of a weight set: `interpolation` (PSNR <-> GAN, ESRGAN sec. 3.4) or `denoise` strength."""

    name: str
    kind: Literal["interpolation", "denoise"]


@dataclass(frozen=True)
class ManifestEntry:
    """One published weight set (one file)."""

    name: str
    aliases: tuple[str, ...]
    family: FamilyName
    filename: str
    hyperparameters: Mapping[str, Any]
    scales: tuple[int, ...] | None  # None: any scale (VDSR runs on a bicubic-upscaled input)
    variant: Literal["psnr", "gan"]
    pair: Pair | None
    sha256: str | None  # None only where just a prefix is published (see sha256_prefix)
    sha256_prefix: str | None
    size: int | None
    num_params: int | None
    license: str
    paper: Paper
    published_metrics: tuple[Metric, ...]
    sources: tuple[Source, ...]
    notes: tuple[str, ...]

    def __hash__(self) -> int:  # hyperparameters is a dict: hash by identity of the weights instead
        return hash((self.name, self.sha256, self.sha256_prefix))

    @property
    def params(self) -> AnyParams:
        """The architecture's typed hyperparameters (validated when the manifest was read)."""
        params: AnyParams = descriptor_for(self.family).params_from(dict(self.hyperparameters), require_all=True)
        return params

    @property
    def res_scale(self) -> float | None:
        """The residual scaling of EDSR/MDSR (not visible in a checkpoint's shapes); None for other families."""
        value = self.hyperparameters.get("res_scale")
        return float(value) if value is not None else None

    @property
    def verification(self) -> Literal["sha256", "prefix"]:
        """How a downloaded file is checked: the full sha256, or only the published prefix of it."""
        return "sha256" if self.sha256 is not None else "prefix"

    @property
    def expected_digest(self) -> str:
        """The full sha256, or the published prefix when that is all there is."""
        digest = self.sha256 if self.sha256 is not None else self.sha256_prefix
        assert digest is not None  # guaranteed by validation
        return digest

    @property
    def digest(self) -> ExpectedSha256:
        """What a downloaded file must hash to, in the type every download checks against."""
        if self.sha256 is not None:
            return ExpectedSha256.full(self.sha256)
        return ExpectedSha256.prefix(self.expected_digest)

    @property
    def bundled(self) -> BundledSource | None:
        """The copy shipped inside the package, if any."""
        return next((source for source in self.sources if isinstance(source, BundledSource)), None)

    @property
    def ncnn(self) -> NcnnSource | None:
        """The authors' ncnn export this entry's file is converted from, if any."""
        return next((source for source in self.sources if isinstance(source, NcnnSource)), None)

    @property
    def downloadable(self) -> bool:
        return any(isinstance(source, DOWNLOADABLE) for source in self.sources)

    def accepts(self, sha256_hex: str) -> bool:
        """Is a file with this sha256 one of this entry's copies (its own file or the bundled one)?"""
        bundled = self.bundled
        return self.digest_matches(sha256_hex) or (bundled is not None and bundled.sha256 == sha256_hex)

    def digest_matches(self, sha256_hex: str) -> bool:
        """Does a file with this sha256 carry these weights (as far as the manifest can tell)?"""
        return self.digest.matches(sha256_hex)

    def serves(self, scale: float) -> bool:
        """Can these weights produce an x`scale` result? (VDSR: any scale > 1.) The family's descriptor
        answers; `scales` was checked against it when the manifest was read."""
        return descriptor_for(self.family).serves(self.params, scale)


@dataclass(frozen=True)
class Manifest:
    entries: tuple[ManifestEntry, ...]
    origin: str

    def get(self, name: str) -> ManifestEntry | None:
        for entry in self.entries:
            if entry.name == name:
                return entry
        return None

    def names(self) -> list[str]:
        return [entry.name for entry in self.entries]


# --- reading -----------------------------------------------------------------------------------------


def manifest_path() -> Path:
    """The installed copy (inside the wheel) if present, else the repository root's (editable/dev install)."""
    packaged = Path(__file__).resolve().parent / MANIFEST_NAME
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / MANIFEST_NAME


@cache
def _load_cached(path: str) -> Manifest:
    return read_manifest(Path(path))


def load_manifest() -> Manifest:
    """The manifest sr ships with, read and validated once per process."""
    return _load_cached(str(manifest_path()))


def read_manifest(path: Path) -> Manifest:
    """Read and validate a manifest file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(f"{path}: cannot read the weights manifest ({error.strerror}); reinstall sr") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}: not valid JSON at line {error.lineno} column {error.colno}: {error.msg}") from error
    return parse_manifest(data, origin=str(path))


def parse_manifest(data: object, *, origin: str = "<manifest>") -> Manifest:
    """Validate the decoded JSON of a manifest; ManifestError names the JSON path of the first bad field."""
    top = _Node(data, "", origin)
    obj = top.object({"version", "models"})
    version = obj["version"].integer()
    if version != SUPPORTED_VERSION:
        raise obj["version"].error(f"version {version} is not supported (this sr reads version {SUPPORTED_VERSION})")
    entries = tuple(_entry(node) for node in obj["models"].array())
    _check_cross_references(entries, obj["models"])
    return Manifest(entries=entries, origin=origin)


# --- validation helpers ------------------------------------------------------------------------------


class _Node:
    """A JSON value plus where it is, so every complaint can name its JSON path."""

    def __init__(self, value: object, path: str, origin: str) -> None:
        self.value = value
        self.path = path
        self.origin = origin

    def error(self, message: str) -> ManifestError:
        where = self.path or "<top>"
        return ManifestError(f"{self.origin}: {where}: {message}")

    def child(self, value: object, key: str | int) -> _Node:
        if isinstance(key, int):
            return _Node(value, f"{self.path}[{key}]", self.origin)
        return _Node(value, f"{self.path}.{key}" if self.path else key, self.origin)

    def object(self, required: set[str], optional: set[str] = frozenset()) -> dict[str, _Node]:  # type: ignore[assignment]
        if not isinstance(self.value, dict):
            raise self.error(f"expected an object, got {_kind(self.value)}")
        unknown = sorted(set(self.value) - required - optional)
        if unknown:
            raise self.child(None, unknown[0]).error(
                f"unknown field (allowed: {', '.join(sorted(required | optional))})")
        missing = sorted(required - set(self.value))
        if missing:
            raise self.child(None, missing[0]).error("required field is missing")
        return {key: self.child(value, key) for key, value in self.value.items()}

    def array(self) -> list[_Node]:
        if not isinstance(self.value, list):
            raise self.error(f"expected an array, got {_kind(self.value)}")
        return [self.child(value, index) for index, value in enumerate(self.value)]

    def string(self, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.error(f"expected a non-empty string, got {_kind(self.value)}")
        if pattern is not None and not pattern.fullmatch(self.value):
            raise self.error(f"{self.value!r} is not {what}")
        return self.value

    def choice(self, choices: tuple[str, ...]) -> str:
        value = self.string()
        if value not in choices:
            raise self.error(f"{value!r} is not one of {', '.join(choices)}")
        return value

    def integer(self, minimum: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.error(f"expected an integer, got {_kind(self.value)}")
        if minimum is not None and self.value < minimum:
            raise self.error(f"{self.value} is below the minimum {minimum}")
        return self.value

    def number(self) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise self.error(f"expected a number, got {_kind(self.value)}")
        return float(self.value)

    def optional(self, read: Callable[[_Node], Any]) -> Any:
        return None if self.value is None else read(self)


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


_ENTRY_REQUIRED = {"name", "aliases", "family", "filename", "hyperparameters", "scales", "variant", "pair", "sha256",
                   "size", "num_params", "license", "paper", "published_metrics", "sources"}
_ENTRY_OPTIONAL = {"sha256_prefix", "notes"}


def _entry(node: _Node) -> ManifestEntry:
    obj = node.object(_ENTRY_REQUIRED, _ENTRY_OPTIONAL)
    name = obj["name"].string(_NAME, "a lowercase name (a-z, 0-9, '-', '.')")
    family: FamilyName = obj["family"].choice(FAMILY_NAMES)  # type: ignore[assignment]
    filename = obj["filename"].string()
    if "/" in filename or "\\" in filename or filename in (".", ".."):
        raise obj["filename"].error(f"{filename!r} must be a bare file name")
    hyperparameters = _hyperparameters(obj["hyperparameters"], family)
    scales = obj["scales"].optional(lambda n: tuple(item.integer(minimum=1) for item in n.array()))
    _check_scales(obj["scales"], family, hyperparameters, scales)
    sha256 = obj["sha256"].optional(lambda n: n.string(_SHA256, "64 lowercase hex digits"))
    prefix_node = obj.get("sha256_prefix")
    prefix = prefix_node.optional(lambda n: n.string(_SHA256_PREFIX, "8 to 63 lowercase hex digits")) \
        if prefix_node is not None else None
    if sha256 is None and prefix is None:
        raise obj["sha256"].error("null needs a sha256_prefix (an unverifiable file is not allowed)")
    if sha256 is not None and prefix is not None:
        raise obj["sha256_prefix"].error("give either the full sha256 or a prefix, not both")
    pair = obj["pair"].optional(_pair)
    sources = tuple(_source(item) for item in obj["sources"].array())
    if not sources:
        raise obj["sources"].error("at least one source is needed")
    _check_local_sources(obj["sources"], sources, filename, sha256)
    notes_node = obj.get("notes")
    notes = tuple(item.string() for item in notes_node.array()) if notes_node is not None else ()
    return ManifestEntry(
        name=name,
        aliases=tuple(item.string(_NAME, "a lowercase name") for item in obj["aliases"].array()),
        family=family,
        filename=filename,
        hyperparameters=hyperparameters,
        scales=scales,
        variant=obj["variant"].choice(VARIANTS),  # type: ignore[arg-type]
        pair=pair,
        sha256=sha256,
        sha256_prefix=prefix,
        size=obj["size"].optional(lambda n: n.integer(minimum=1)),
        num_params=obj["num_params"].optional(lambda n: n.integer(minimum=1)),
        license=obj["license"].string(),
        paper=_paper(obj["paper"]),
        published_metrics=tuple(_metric(item) for item in obj["published_metrics"].array()),
        sources=sources,
        notes=notes,
    )


def _hyperparameters(node: _Node, family: str) -> dict[str, Any]:
    """Every field of the family's Params dataclass, typed and range-checked by the descriptor's schema
    (derived from the dataclass), then by the dataclass itself; errors name the JSON path."""
    descriptor = descriptor_for(family)
    node.object(required={spec.name for spec in descriptor.schema()})  # unknown / missing fields, by path
    try:
        params = descriptor.params_from(node.value, require_all=True)
    except HyperparameterError as error:
        where = node.child(None, error.field) if error.field else node
        raise where.error(error.reason) from None
    return {spec.name: getattr(params, spec.name) for spec in descriptor.schema()}


def _check_scales(node: _Node, family: str, hp: Mapping[str, Any], scales: tuple[int, ...] | None) -> None:
    descriptor = descriptor_for(family)
    implied = descriptor.scales(descriptor.params_from(dict(hp), require_all=True))
    if scales != implied:
        shown = "null" if implied is None else list(implied)
        raise node.error(f"{list(scales) if scales is not None else 'null'} contradicts the hyperparameters ({shown})")


def _pair(node: _Node) -> Pair:
    obj = node.object({"name", "kind"})
    return Pair(name=obj["name"].string(_NAME, "a lowercase name"), kind=obj["kind"].choice(PAIR_KINDS))  # type: ignore[arg-type]


def _paper(node: _Node) -> Paper:
    obj = node.object({"title", "authors", "venue", "arxiv"})
    return Paper(title=obj["title"].string(), authors=obj["authors"].string(), venue=obj["venue"].string(),
                 arxiv=obj["arxiv"].optional(lambda n: n.string(re.compile(r"\d{4}\.\d{4,5}"), "an arXiv id like 1707.02921")))


def _metric(node: _Node) -> Metric:
    obj = node.object({"dataset", "scale", "psnr", "ssim", "source"})
    ssim = obj["ssim"].optional(lambda n: n.number())
    if ssim is not None and not 0 < ssim <= 1:
        raise obj["ssim"].error(f"{ssim} is not in (0, 1]")
    return Metric(dataset=obj["dataset"].string(), scale=obj["scale"].integer(minimum=1), psnr=obj["psnr"].number(),
                  ssim=ssim, source=obj["source"].string())


def _source(node: _Node) -> Source:
    if not isinstance(node.value, dict):
        raise node.error(f"expected an object, got {_kind(node.value)}")
    kind = node.child(node.value.get("kind"), "kind").choice(("hf", "url", "bundled", "ncnn"))
    if kind == "bundled":
        obj = node.object({"kind", "filename", "sha256", "size"})
        filename = obj["filename"].string()
        if "/" in filename or "\\" in filename or filename.startswith("."):
            raise obj["filename"].error(f"{filename!r} must be a bare file name inside sr_cli/bundled/")
        return BundledSource(filename=filename, sha256=obj["sha256"].string(_SHA256, "64 lowercase hex digits"),
                             size=obj["size"].integer(minimum=1))
    if kind == "ncnn":
        obj = node.object({"kind", "param_filename", "param_sha256", "param_size", "bin_sha256", "bin_size", "origin"})
        param_filename = obj["param_filename"].string()
        if "/" in param_filename or "\\" in param_filename or not param_filename.endswith(".param"):
            raise obj["param_filename"].error(f"{param_filename!r} must be a bare NAME.param file name")
        return NcnnSource(param_filename=param_filename, param_sha256=obj["param_sha256"].string(_SHA256, "64 lowercase hex digits"),
                          param_size=obj["param_size"].integer(minimum=1),
                          bin_sha256=obj["bin_sha256"].string(_SHA256, "64 lowercase hex digits"),
                          bin_size=obj["bin_size"].integer(minimum=1), origin=obj["origin"].string())
    if kind == "url":
        obj = node.object({"kind", "url"})
        url = obj["url"].string()
        if not url.startswith("https://") or len(url) <= len("https://") or any(c.isspace() for c in url):
            raise obj["url"].error(f"{url!r} is not an https URL (plain http cannot be trusted in transit)")
        return UrlSource(url=url)
    obj = node.object({"kind", "repo", "filename", "revision"}, {"repo_type"})
    filename = obj["filename"].string()
    if filename.startswith("/") or ".." in filename.split("/"):
        raise obj["filename"].error(f"{filename!r} must be a path inside the repository")
    repo_type = obj["repo_type"].choice(HF_REPO_TYPES) if "repo_type" in obj else "model"
    return HubSource(repo=obj["repo"].string(_HF_REPO, "an owner/name repository id"), filename=filename,
                     revision=obj["revision"].string(_REVISION, "a pinned 40-hex commit id"),
                     repo_type=repo_type)  # type: ignore[arg-type]


def _check_local_sources(node: _Node, sources: tuple[Source, ...], filename: str, sha256: str | None) -> None:
    """A bundled copy under the entry's own file name is that file; an ncnn pair converts to the entry's
    file or to its bundled copy."""
    kinds = [source.kind for source in sources]
    for kind in ("bundled", "ncnn"):
        if kinds.count(kind) > 1:
            raise node.child(None, kinds.index(kind, kinds.index(kind) + 1)).error(f"a second {kind} source")
    for index, source in enumerate(sources):
        if isinstance(source, BundledSource) and source.filename == filename and source.sha256 != sha256:
            raise node.child(None, index).child(None, "sha256").error(
                "a bundled copy named like the entry's file must have the entry's sha256")
        converted = sha256 is not None and filename.endswith(".safetensors")
        if isinstance(source, NcnnSource) and not (converted or "bundled" in kinds):
            raise node.child(None, index).error("an ncnn source needs the entry's file (with a full sha256) or its "
                                                "bundled copy to be the .safetensors conversion of the pair")


def _check_cross_references(entries: tuple[ManifestEntry, ...], models: _Node) -> None:
    by_name: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if entry.name in by_name:
            raise models.child(None, index).child(None, "name").error(
                f"duplicate name {entry.name!r} (also models[{by_name[entry.name]}])")
        by_name[entry.name] = index
    for index, entry in enumerate(entries):
        here = models.child(None, index)
        for alias in entry.aliases:
            if alias in by_name:
                raise here.child(None, "aliases").error(f"alias {alias!r} is also a model name")
        if entry.pair is None:
            continue
        where = here.child(None, "pair").child(None, "name")
        partner_index = by_name.get(entry.pair.name)
        if partner_index is None:
            raise where.error(f"{entry.pair.name!r} is not a model in this manifest")
        partner = entries[partner_index]
        if partner.family != entry.family or dict(partner.hyperparameters) != dict(entry.hyperparameters):
            raise where.error(f"{partner.name!r} has another architecture; only identical architectures can be paired")
        if partner.pair is None or partner.pair.name != entry.name or partner.pair.kind != entry.pair.kind:
            raise where.error(f"{partner.name!r} does not name {entry.name!r} back as its {entry.pair.kind} pair")
