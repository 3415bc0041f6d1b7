"""Load feature definitions from a project's Python file."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from lendml.errors import DefinitionError
from lendml.features.definitions import DerivedView, Entity, FeatureService, FeatureView, Source


@dataclass(frozen=True)
class Definitions:
    """Every definition found at module level in a definitions file."""

    entities: tuple[Entity, ...]
    sources: tuple[Source, ...]
    feature_views: tuple[FeatureView, ...]
    derived_views: tuple[DerivedView, ...]
    feature_services: tuple[FeatureService, ...]


def load_definitions(path: Path) -> Definitions:
    """Execute the project's own definitions file and collect its definitions.

    The file is the project's code (like a Feast repo's or a dbt project's); it is run,
    never data from a registry or a request.
    """
    if not path.exists():
        raise DefinitionError(
            f"Definitions file {str(path)!r} does not exist; create it or set "
            "`definitions:` in lendml.yaml.",
            path=str(path),
        )
    mod_name = f"lendml_project_defs_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - path exists and is .py
        raise DefinitionError(f"Cannot load definitions from {str(path)!r}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except DefinitionError as exc:
        raise DefinitionError(f"{path.name}: {exc.message}", path=str(path)) from exc
    except Exception as exc:  # the user's file may raise anything; report where
        raise DefinitionError(
            f"{path.name} failed to run: {type(exc).__name__}: {exc}", path=str(path)
        ) from exc
    finally:
        sys.modules.pop(mod_name, None)
    objs = [v for k, v in vars(module).items() if not k.startswith("_")]

    def of(kind: type) -> tuple:
        seen, out = set(), []
        for o in objs:
            if isinstance(o, kind) and id(o) not in seen:
                seen.add(id(o))
                out.append(o)
        return tuple(out)

    views = list(of(FeatureView))
    derived = list(of(DerivedView))
    services = of(FeatureService)
    # Views used only inside a service still belong to the project.
    for s in services:
        for v in s.views:
            target = views if isinstance(v, FeatureView) else derived
            if all(v is not t for t in target):
                target.append(v)
    entities = list(of(Entity))
    for v in views:
        if all(v.entity is not e for e in entities):
            entities.append(v.entity)
    sources = list(of(Source))
    for v in views:
        if all(v.source is not s for s in sources):
            sources.append(v.source)
    return Definitions(tuple(entities), tuple(sources), tuple(views), tuple(derived), services)
