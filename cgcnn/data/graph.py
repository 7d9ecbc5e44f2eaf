"""Crystal → graph: nodes are the atoms of the unit cell, edges their nearest periodic neighbours.

For every atom ``i`` the graph keeps its ``M`` nearest neighbours ``j`` (periodic images included) within the
cutoff radius ``r``, sorted by distance, and expands each distance on Gaussians (centres ``dmin..r`` every
``step`` Å, width ``step``: 41 features for the original 8 Å / 0.2 Å). Edges are stored as flat arrays of
length ``n_atoms * M`` in atom-major order (edge ``i * M + k`` is the ``k``-th neighbour of atom ``i``), so a
batch of crystals is one concatenation and a per-atom sum is a reshape.

Fill-in edges: an atom with fewer than ``M`` neighbours inside ``r`` is padded the way the original CGCNN code
does (neighbour index 0 of its crystal at distance ``r + 1`` Å), so the original checkpoints give the original
numbers; ``edge_mask`` is False on those edges so that other layers (attention) can ignore them.

Neighbour order and ties: the cut at ``M`` can fall inside a shell of equidistant neighbours (perovskites, for
example), and then *which* neighbours are kept depends on order. We follow the reference implementation's
default path exactly: pymatgen's ``get_neighbor_list`` order, sorted stably by distance. Another neighbour
search, or another pymatgen version that enumerates images differently, can keep a different subset of a tied
shell; crystals with no tie at the cut are unaffected (the invariance tests use such crystals).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Structure
from pymatgen.optimization.neighbors import find_points_in_spheres

from cgcnn.data.crystal_io import check_usable
from cgcnn.data.elements import ElementTable, original_table
from cgcnn.data.graph_budget import check_pair_budget
from cgcnn.data.screen import MAX_CELL_LENGTH, MIN_VOLUME_PER_ATOM
from cgcnn.errors import CrystalInputError, NoNeighborsError

#: Bumped whenever the arrays a graph holds change meaning; part of every cache key.
GRAPH_FORMAT_VERSION = 1

_SELF_TOL = 1e-8  # pymatgen's default: closer than this is the atom itself


#: Atoms in one crystal's cell beyond which :class:`BuildOptions` refuses it unless told otherwise (a server sets
#: its own limit, ``CGCNN_MAX_ATOMS``).
DEFAULT_MAX_ATOMS = 1000


@dataclass(frozen=True)
class GraphParams:
    """The definition of a model's graphs: what a crystal's graph *is*. The defaults are the original CGCNN's.

    A model is trained on graphs of one definition and must be fed graphs of the same one, so these four
    numbers are saved in every checkpoint and compared between ensemble members. Limits of the place a graph
    is built (how many atoms a server accepts, whether to search past the cutoff) are :class:`BuildOptions`:
    they decide *whether* a crystal gets a graph, never what the graph is, and are never saved with a model.

    Attributes:
        radius: cutoff radius in Å; also the last Gaussian centre.
        max_neighbors: ``M``, neighbours kept per atom.
        dmin: first Gaussian centre in Å.
        step: spacing (and width) of the Gaussians in Å.
    """

    radius: float = 8.0
    max_neighbors: int = 12
    dmin: float = 0.0
    step: float = 0.2

    def __post_init__(self) -> None:
        # A bad value here gives silently wrong graphs (max_neighbors=0: no edges, NaN predictions), so refuse.
        if int(self.max_neighbors) < 1:
            raise CrystalInputError(f"max_neighbors must be at least 1, got {self.max_neighbors}")
        if not self.radius > 0 or not self.step > 0:
            raise CrystalInputError(f"radius and step must be positive, got {self.radius} and {self.step}")

    def gaussian_centers(self) -> np.ndarray:
        """Centres of the Gaussian distance expansion, exactly as the original code computes them."""
        return np.arange(self.dmin, self.radius + self.step, self.step)

    @property
    def n_edge_features(self) -> int:
        """Number of Gaussian edge features (41 for the defaults)."""
        return len(self.gaussian_centers())

    def key(self) -> str:
        """Stable short hash of the definition and the graph format (for caches and run records)."""
        fields = {**dataclasses.asdict(self), "format": GRAPH_FORMAT_VERSION}
        payload = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BuildOptions:
    """How one caller builds graphs: the limits of where it runs, never part of a model or its checkpoint.

    Attributes:
        max_atoms: crystals with more atoms in their cell are refused before any neighbour search (a page must
            not freeze on a huge cell); a server passes its ``CGCNN_MAX_ATOMS``, a command its ``--max-atoms``.
        widen_radius: if some atom has no neighbour inside the radius, grow the search radius (in 1 Å steps, up
            to ``3 * radius``) until every atom has one, instead of refusing the crystal. The Gaussian centres do
            not move, so such far neighbours carry almost no edge feature. This changes the graphs of the
            crystals it rescues, so a graph cache keeps such graphs apart.
    """

    max_atoms: int = DEFAULT_MAX_ATOMS
    widen_radius: bool = False

    def __post_init__(self) -> None:
        if int(self.max_atoms) < 1:
            raise CrystalInputError(f"max_atoms must be at least 1, got {self.max_atoms}")


class TooManyAtomsError(CrystalInputError):
    """A crystal has more atoms than :attr:`BuildOptions.max_atoms` (a limit of the caller, not of the crystal)."""


def check_atom_count(n_atoms: int, options: BuildOptions) -> None:
    """Refuse a crystal of ``n_atoms`` atoms beyond ``options.max_atoms``.

    Raises:
        TooManyAtomsError: naming both numbers.
    """
    if n_atoms > options.max_atoms:
        raise TooManyAtomsError(
            f"the structure has {n_atoms} atoms in its cell; the limit is {options.max_atoms} "
            "(use a primitive cell, or raise max_atoms)"
        )


@dataclass
class CrystalGraph:
    """One crystal as plain arrays (easy to cache, batch and draw).

    Shapes (``n`` atoms, ``M`` neighbours per atom, ``E = n * M`` edges, ``F`` element features):
        atomic_numbers: ``(n,)`` int.
        node_features: ``(n, F)`` float32, from the element table.
        edge_src: ``(E,)`` int, the neighbour ``j`` (where the message comes from).
        edge_dst: ``(E,)`` int, the centre atom ``i`` (``edge_dst[e] == e // M``).
        distances: ``(E,)`` float64, in Å (``radius + 1`` on fill-in edges).
        images: ``(E, 3)`` int, lattice translation of the neighbour: it sits at
            ``frac_coords[j] + images[e]``; edges with a non-zero image cross the cell boundary.
        edge_mask: ``(E,)`` bool, False on fill-in edges.
        radius: cutoff actually used (larger than the requested one only after widening).
    """

    atomic_numbers: np.ndarray
    node_features: np.ndarray
    edge_src: np.ndarray
    edge_dst: np.ndarray
    distances: np.ndarray
    images: np.ndarray
    edge_mask: np.ndarray
    radius: float

    @property
    def n_atoms(self) -> int:
        """Number of atoms (nodes)."""
        return len(self.atomic_numbers)

    @property
    def max_neighbors(self) -> int:
        """``M``: edges per atom, fill-ins included."""
        return len(self.edge_src) // max(self.n_atoms, 1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain dict of arrays (for ``np.savez``); inverse of :meth:`from_arrays`."""
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        arrays["radius"] = np.asarray(self.radius)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> CrystalGraph:
        """Rebuild a graph from :meth:`to_arrays` output."""
        values = {f.name: np.asarray(arrays[f.name]) for f in dataclasses.fields(cls)}
        values["radius"] = float(values["radius"])
        return cls(**values)


def gaussian_expand(distances: np.ndarray, params: GraphParams) -> np.ndarray:
    """Expand distances on Gaussians: ``exp(-(d - c_k)^2 / step^2)``, float32 ``(..., n_edge_features)``.

    Computed in float64 and rounded once, as the original code does, so features match it bit for bit.
    """
    centers = params.gaussian_centers()
    d = np.asarray(distances, dtype=np.float64)[..., None]
    return np.exp(-((d - centers) ** 2) / params.step**2).astype(np.float32)


def structure_to_graph(
    structure: Structure,
    params: GraphParams,
    table: ElementTable | None = None,
    options: BuildOptions | None = None,
) -> CrystalGraph:
    """Turn a pymatgen ``Structure`` into a :class:`CrystalGraph` built with ``params``.

    ``params`` is required: a model reads graphs built its own way (``Predictor.graph_params``), so a default
    here would silently build the wrong graph for a model with other parameters. ``options`` are the caller's
    limits (default: :class:`BuildOptions`).

    Raises:
        CrystalInputError: disordered (partially occupied) sites, an empty structure, or too many atoms.
        UnknownElementError: a species outside the element table (or a dummy species).
        TooManyAtomsError: more atoms than ``options.max_atoms``.
        NoNeighborsError: some atom has no neighbour inside the radius (and ``options.widen_radius`` is off or
            did not help).
    """
    check_usable(structure)  # no atoms, disorder, dummy species: the rules (and words) of file input
    atomic_numbers = np.array([site.specie.Z for site in structure], dtype=np.int64)
    return graph_from_arrays(
        structure.lattice.matrix, structure.frac_coords, atomic_numbers, params, table, structure.cart_coords, options
    )


def graph_from_arrays(
    lattice: np.ndarray,
    frac_coords: np.ndarray,
    atomic_numbers: np.ndarray,
    params: GraphParams,
    table: ElementTable | None = None,
    cart_coords: np.ndarray | None = None,
    options: BuildOptions | None = None,
) -> CrystalGraph:
    """Build a graph from a compactly stored crystal (lattice rows in Å, fractional coordinates, Z).

    This is the fast path: no ``Structure`` object, one C neighbour search, then vectorised NumPy.
    """
    table = table or original_table()
    options = options or BuildOptions()
    atomic_numbers = np.asarray(atomic_numbers, dtype=np.int64)
    n = len(atomic_numbers)
    if n == 0:
        raise CrystalInputError("the structure has no atoms")
    check_atom_count(n, options)
    node_features = table.lookup(atomic_numbers)
    lattice = np.ascontiguousarray(lattice, dtype=float)
    volume = abs(np.linalg.det(lattice))
    if volume < 1e-6:
        raise CrystalInputError("the lattice has zero volume")
    # The neighbour search allocates by cell size and density: a 10⁶ Å cell or a 0.05 Å one would exhaust memory
    # before anything else could refuse it (library callers do not go through the upload screen).
    longest = float(np.linalg.norm(lattice, axis=1).max())
    if not np.isfinite(longest) or longest > MAX_CELL_LENGTH:
        raise CrystalInputError(f"a cell edge of {longest:.3g} Å is longer than the {MAX_CELL_LENGTH:g} Å accepted")
    if volume / n < MIN_VOLUME_PER_ATOM:
        raise CrystalInputError(
            f"the cell holds {volume / n:.3g} Å³ per atom, less than the {MIN_VOLUME_PER_ATOM:g} Å³ of any real "
            "crystal (a broken or tiny cell)"
        )
    if cart_coords is None:
        cart_coords = np.dot(np.asarray(frac_coords, dtype=float), lattice)
    cart_coords = np.ascontiguousarray(cart_coords, dtype=float)

    radius = float(params.radius)
    while True:
        check_pair_budget(n, volume, radius)  # before the search allocates the pairs (CGCNN_MAX_PAIRS)
        centers, neighbors, images, dists = _neighbor_list(cart_coords, lattice, radius)
        counts = np.bincount(centers, minlength=n)
        if counts.min() > 0:
            break
        if not options.widen_radius or radius + 1.0 > 3 * params.radius:
            lonely = int(np.argmin(counts))
            hint = (
                f"; even {radius:g} Å was not enough"
                if options.widen_radius
                else "; pass --widen-radius (BuildOptions(widen_radius=True)) to search further"
            )
            raise NoNeighborsError(
                f"atom {lonely} (Z={atomic_numbers[lonely]}) has no neighbour within {radius:g} Å, "
                f"so the crystal cannot be predicted at this cutoff{hint}"
            )
        radius += 1.0

    m = params.max_neighbors
    # Stable sort by (centre, distance): ties keep pymatgen's order, exactly like the reference.
    order = np.lexsort((dists, centers))
    centers, neighbors, images, dists = centers[order], neighbors[order], images[order], dists[order]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(centers)) - starts[centers]
    keep = rank < m
    slot = centers[keep] * m + rank[keep]

    e = n * m
    edge_src = np.zeros(e, dtype=np.int64)  # fill-in: neighbour 0, as the original
    distances = np.full(e, params.radius + 1.0)
    edge_images = np.zeros((e, 3), dtype=np.int64)
    edge_mask = np.zeros(e, dtype=bool)
    edge_src[slot] = neighbors[keep]
    distances[slot] = dists[keep]
    edge_images[slot] = images[keep]
    edge_mask[slot] = True
    return CrystalGraph(
        atomic_numbers=atomic_numbers,
        node_features=node_features,
        edge_src=edge_src,
        edge_dst=np.repeat(np.arange(n, dtype=np.int64), m),
        distances=distances,
        images=edge_images,
        edge_mask=edge_mask,
        radius=radius,
    )


def _neighbor_list(
    cart_coords: np.ndarray, lattice: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pymatgen's C neighbour search, as ``Structure.get_neighbor_list`` calls it (same order of results)."""
    centers, neighbors, images, dists = find_points_in_spheres(
        cart_coords, cart_coords, r=radius, pbc=np.ones(3, dtype=np.int64), lattice=lattice, tol=_SELF_TOL
    )
    not_self = ~((centers == neighbors) & (dists <= _SELF_TOL))
    return centers[not_self], neighbors[not_self], images[not_self].astype(np.int64), dists[not_self]


#: Two neighbour distances closer than this (Å) are one shell: CIFs round coordinates, so a shell that symmetry
#: makes equidistant comes back spread over ~1e-7 Å.
TIE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class NeighbourTie:
    """Where the cut at ``M`` neighbours splits a shell of equidistant neighbours.

    Then *which* neighbours of the shell the graph keeps depends on the order the neighbour search lists them
    in, so writing the crystal down another way (atoms reordered, another origin, a rotation) can change the
    graph and the prediction slightly. That is a property of the crystal and ``M``, not a bug.

    Attributes:
        atoms: every atom (index in the structure) whose cut falls inside a shell.
        distance: the split shell's distance in Å, at the first such atom.
        kept: neighbours of that shell inside the cut, at the first such atom.
        shell: neighbours in that shell, at the first such atom (``kept < shell``).
    """

    atoms: tuple[int, ...]
    distance: float
    kept: int
    shell: int

    def describe(self, max_neighbors: int) -> str:
        """One sentence for a page or a test report."""
        more = f" (and {len(self.atoms) - 1} more atoms)" if len(self.atoms) > 1 else ""
        return (
            f"the {max_neighbors}-neighbour cut of atom {self.atoms[0]}{more} falls inside a shell of "
            f"{self.shell} neighbours at {self.distance:.3f} Å, of which {self.kept} are kept"
        )


def neighbour_tie(structure: Structure, params: GraphParams, tolerance: float = TIE_TOLERANCE) -> NeighbourTie | None:
    """Whether the cut at ``params.max_neighbors`` falls inside a shell of equidistant neighbours (see module).

    An atom with at most ``M`` neighbours inside the radius keeps them all, so it has no tie. Rock salt has one
    (each atom's 12 like neighbours at ``a/√2`` follow its 6 unlike ones: 6 of 12 are kept), as has cubic SrTiO3
    (Ti keeps 6 of its 8 Sr); crystals without one give graphs that do not depend on how they are written down.

    Args:
        structure: the crystal.
        params: the graph definition (radius and ``M``).
        tolerance: distances closer than this (Å) count as one shell.

    Returns:
        None without a tie, else where it is.
    """
    lattice = np.ascontiguousarray(structure.lattice.matrix, dtype=float)
    cart = np.ascontiguousarray(structure.cart_coords, dtype=float)
    centers, _, _, dists = _neighbor_list(cart, lattice, float(params.radius))
    m = int(params.max_neighbors)
    order = np.lexsort((dists, centers))
    centers, dists = centers[order], dists[order]
    counts = np.bincount(centers, minlength=len(structure))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    crowded = np.flatnonzero(counts > m)  # atoms that lose neighbours at the cut
    last_kept, first_dropped = dists[starts[crowded] + m - 1], dists[starts[crowded] + m]
    tied = crowded[first_dropped - last_kept <= tolerance]
    if not len(tied):
        return None
    first = int(tied[0])
    own = dists[starts[first] : starts[first] + counts[first]]
    cut = float(own[m - 1])
    in_shell = np.abs(own - cut) <= tolerance
    return NeighbourTie(
        atoms=tuple(int(a) for a in tied), distance=cut, kept=int(in_shell[:m].sum()), shell=int(in_shell.sum())
    )


@dataclass
class GraphBatch:
    """Many crystals as one disconnected graph of torch tensors (what a model's ``forward`` takes).

    Shapes (``N`` atoms and ``E = N * M`` edges over the batch, ``B`` crystals):
        node_features: ``(N, F)``; edge_features: ``(E, G)`` Gaussian-expanded distances;
        edge_src, edge_dst: ``(E,)`` long, batch-global atom indices; edge_mask: ``(E,)`` bool;
        crystal_index: ``(N,)`` long, which crystal each atom belongs to.
        edge_scale: ``(E,)`` float or None: a factor on each edge's message in every convolution (None: 1). Only
            attribution sets it (0 removes an edge's message; its gradient at 1 is gradient × input).
    """

    node_features: torch.Tensor
    edge_features: torch.Tensor
    edge_src: torch.Tensor
    edge_dst: torch.Tensor
    edge_mask: torch.Tensor
    crystal_index: torch.Tensor
    n_crystals: int
    max_neighbors: int
    edge_scale: torch.Tensor | None = None

    @property
    def n_atoms(self) -> int:
        """Atoms in the whole batch."""
        return self.node_features.shape[0]

    def to(self, device: torch.device | str) -> GraphBatch:
        """Copy every tensor to ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            if isinstance(getattr(self, f.name), torch.Tensor)
            else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }
        return GraphBatch(**moved)


def collate(graphs: list[CrystalGraph], params: GraphParams) -> GraphBatch:
    """Concatenate graphs into one :class:`GraphBatch`, offsetting atom indices per crystal.

    ``params`` must be the ones the graphs were built with: they expand the distances into edge features.
    """
    if not graphs:
        raise ValueError("cannot batch an empty list of graphs")
    m = graphs[0].max_neighbors
    if any(g.max_neighbors != m for g in graphs):
        raise ValueError("all graphs of a batch must have the same number of neighbours per atom")
    sizes = np.array([g.n_atoms for g in graphs])
    offsets = np.repeat(np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes * m)
    return GraphBatch(
        node_features=torch.from_numpy(np.concatenate([g.node_features for g in graphs])),
        edge_features=torch.from_numpy(gaussian_expand(np.concatenate([g.distances for g in graphs]), params)),
        edge_src=torch.from_numpy(np.concatenate([g.edge_src for g in graphs]) + offsets),
        edge_dst=torch.from_numpy(np.concatenate([g.edge_dst for g in graphs]) + offsets),
        edge_mask=torch.from_numpy(np.concatenate([g.edge_mask for g in graphs])),
        crystal_index=torch.from_numpy(np.repeat(np.arange(len(graphs)), sizes)),
        n_crystals=len(graphs),
        max_neighbors=m,
    )


class GraphSet:
    """A whole set of crystals collated once; any mini-batch is then a vectorised gather.

    Training visits every crystal every epoch; collating lists of graphs (and expanding Gaussians) each time
    would cost more than the model's forward pass. Atom-major fixed-``M`` edges make the gather simple: the
    edges of atom ``a`` are ``a * M .. a * M + M - 1``.
    """

    def __init__(self, graphs: list[CrystalGraph], params: GraphParams) -> None:
        self.full = collate(graphs, params)
        self.sizes = np.array([g.n_atoms for g in graphs])
        self.starts = np.concatenate(([0], np.cumsum(self.sizes)[:-1]))

    def __len__(self) -> int:
        return len(self.sizes)

    def atom_index(self, crystals: np.ndarray) -> np.ndarray:
        """Global atom indices of the given crystals, in order."""
        sizes = self.sizes[crystals]
        shift = np.repeat(self.starts[crystals] - (np.cumsum(sizes) - sizes), sizes)
        return np.arange(sizes.sum()) + shift

    def batch(self, crystals: np.ndarray, node_features: torch.Tensor | None = None) -> GraphBatch:
        """The sub-batch of ``crystals`` (indices into this set).

        Args:
            crystals: indices of the crystals, in batch order.
            node_features: per-atom features to gather instead of the element features (for example the
                cached output of frozen layers), aligned with this set's atoms.
        """
        crystals = np.asarray(crystals)
        atoms = self.atom_index(crystals)
        sizes = self.sizes[crystals]
        m = self.full.max_neighbors
        edges = (atoms[:, None] * m + np.arange(m)).ravel()
        shift = torch.from_numpy(np.repeat(atoms - np.arange(len(atoms)), m))
        atoms_t, edges_t = torch.from_numpy(atoms), torch.from_numpy(edges)
        source = self.full.node_features if node_features is None else node_features
        return GraphBatch(
            node_features=source[atoms_t],
            edge_features=self.full.edge_features[edges_t],
            edge_src=self.full.edge_src[edges_t] - shift,  # a neighbour lies in its centre's crystal
            edge_dst=self.full.edge_dst[edges_t] - shift,
            edge_mask=self.full.edge_mask[edges_t],
            crystal_index=torch.from_numpy(np.repeat(np.arange(len(crystals)), sizes)),
            n_crystals=len(crystals),
            max_neighbors=m,
        )
