"""Reading files from elsewhere and writing the user's files: nothing executes, nothing is lost.

A run directory may come from anyone (mailed, downloaded, copied between machines), so every
file dqnrun reads from one goes through this module:

- joblib result files (`results.joblib`, `seeds/*.joblib`, the lecture's own files) are read by
  an allow-list unpickler: plain containers and scalars, numpy arrays of plain dtypes written by
  joblib, and nothing else. A pickle that names any other global (`os.system`, `builtins.exec`,
  ...) is refused before anything is called.
- (checkpoints and models are torch files, read with `weights_only=True`: see chunks.py and
  results.load_torch_file; they too are opened through `open_regular`.)
- only regular files are opened (a FIFO or a device named `results.joblib` is refused, without
  blocking on it), and their size is capped.

Output files go through `check_output` (an existing file needs --force; a directory, a missing
folder or a read-only place is one line) and `output_errors` (full disk, read-only, permission
denied: one line naming the path and the cause).

numpy is the only import at module level; joblib and torch are imported where they are used.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

from dqnrun.errors import Fault, UnreadableFile, UserError

MAX_RESULT_BYTES = 1 << 30  # a results.joblib of 100 seeds x 100,000 episodes is about 0.5 GiB
MAX_TEXT_BYTES = 1 << 20  # config.yaml: a few hundred bytes in practice


# ---------------------------------------------------------------------------------------------
# Regular files only


def open_regular(path: str | Path, what: str = "file", max_bytes: int | None = None) -> BinaryIO:
    """Open `path` for reading if it is a regular file (no FIFO, device or socket) of at most
    `max_bytes`; anything else is a UserError. Opening never blocks, even on a FIFO."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnreadableFile(f"no such {what}: {path}") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {describe_oserror(exc)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            mode = info.st_mode
            kind = ("a directory" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a device")
            raise UnreadableFile(f"{path} is {kind}; a {what} must be a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise UnreadableFile(f"{path} is {info.st_size / 2**20:,.0f} MiB, more than a {what} can be "
                            f"({max_bytes / 2**20:,.0f} MiB)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text(path: str | Path, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A small UTF-8 text file (config.yaml), checked like any other input."""
    with open_regular(path, what, max_bytes) as f:
        data = f.read(max_bytes + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


# ---------------------------------------------------------------------------------------------
# joblib files through an allow-list unpickler


class _Refused(Exception):
    """Raised inside the unpickler when the stream asks for something not on the allow-list."""


class _Budget(io.RawIOBase):
    """A read-only view of a (possibly decompressed) stream that refuses to yield more than
    `limit` bytes, so a small compressed file cannot expand without bound."""

    def __init__(self, raw: Any, limit: int):
        self.raw = raw
        self.left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(min(len(buffer), self.left + 1))
        self.left -= len(data)
        if self.left < 0:
            raise _Refused("more data than a result file holds")
        buffer[: len(data)] = data
        return len(data)


def _unpickler_class() -> type:
    """The allow-list unpickler, built on joblib's NumpyUnpickler (imported on first use)."""
    global _SAFE_UNPICKLER
    if _SAFE_UNPICKLER is not None:
        return _SAFE_UNPICKLER
    from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

    ndarray_marker = object()  # stands for numpy.ndarray: a wrapper's subclass, never callable

    def make_dtype(spec: Any, align: bool = False, copy: bool = True) -> np.dtype:
        # numpy pickles a dtype as dtype(str, align, copy) plus a BUILD with its state.
        if not isinstance(spec, str) or len(spec) > 64:
            raise _Refused("a dtype that is not a plain type code")
        dtype = np.dtype(spec, bool(align), bool(copy))
        if dtype.hasobject:
            raise _Refused("an object dtype")
        return dtype

    def make_scalar(dtype: Any, data: Any = None) -> Any:
        # numpy pickles a scalar such as np.float64(1.5) as scalar(dtype, raw bytes).
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
            raise _Refused("a numpy scalar that is not plain data")
        if len(data) != dtype.itemsize:
            raise _Refused("a numpy scalar of the wrong size")
        return np.frombuffer(data, dtype=dtype)[0].copy()

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        # ndarray.__reduce__: _reconstruct(ndarray, (0,), b'b') then BUILD with the data.
        if subtype is not ndarray_marker or shape != (0,):
            raise _Refused("an array built in an unusual way")
        return np.ndarray((0,), dtype=np.uint8)

    def latin1(text: Any, encoding: str = "latin1") -> bytes:
        # Pickle protocols 0-2 write bytes as _codecs.encode(text, "latin1").
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise _Refused("an encoding call other than latin-1 bytes")
        return text.encode("latin1")

    def from_buffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
        # Pickle protocol 5 writes an array as _frombuffer(raw bytes, dtype, shape, order).
        if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise _Refused("an array that is not plain data")
        if (not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape)
                or order not in ("C", "F")):
            raise _Refused("an array with a malformed shape")
        count = 1
        for n in shape:
            count *= n
        if count * dtype.itemsize != len(buf):
            raise _Refused("an array whose data does not fit its shape")
        array = np.frombuffer(bytes(buf), dtype=dtype)
        return array.reshape(shape[::-1]).T.copy() if order == "F" else array.reshape(shape).copy()

    def empty_bytes(*args: Any) -> bytes:
        # Pickle protocols 0-2 write b"" as bytes(); anything else is not how bytes are written.
        if args:
            raise _Refused("a bytes() call with arguments")
        return b""

    allowed: dict[tuple[str, str], Any] = {
        ("builtins", "bytes"): empty_bytes,
        ("joblib.numpy_pickle", "NumpyArrayWrapper"): NumpyArrayWrapper,
        ("numpy", "ndarray"): ndarray_marker,
        ("numpy", "dtype"): make_dtype,
        ("builtins", "complex"): complex,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        # Runs saved before version strings were made plain str recorded torch.__version__,
        # a str subclass; it loads as the str it is.
        ("torch.torch_version", "TorchVersion"): str,
    }
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(core, "scalar")] = make_scalar
        allowed[(core, "_reconstruct")] = reconstruct
    allowed[("numpy._core.numeric", "_frombuffer")] = allowed[("numpy.core.numeric", "_frombuffer")] = from_buffer
    allowed[("_codecs", "encode")] = latin1

    class SafeUnpickler(NumpyUnpickler):
        """joblib's unpickler with an allow-list of globals and checked array headers."""

        dispatch = NumpyUnpickler.dispatch.copy()

        def __init__(self, file_handle: Any, budget: int):
            super().__init__("", file_handle, ensure_native_byte_order=True)
            self.budget = budget

        def find_class(self, module: str, name: str) -> Any:
            if module == "__builtin__":  # Python 2 names in pickle protocols 0-2
                module = "builtins"
            found = allowed.get((module, name))
            if found is None:
                raise _Refused(f"it names {str(module)[:60]}.{str(name)[:60]}")
            return found

        def persistent_load(self, pid: Any) -> Any:
            raise _Refused("a persistent reference")

        def load_build(self) -> None:
            pickle._Unpickler.load_build(self)
            wrapper = self.stack[-1]
            if isinstance(wrapper, NumpyArrayWrapper):
                self.stack[-1] = self.read_wrapped_array(wrapper)
            elif isinstance(wrapper, np.ndarray) and wrapper.dtype.hasobject:
                raise _Refused("an array of Python objects")

        dispatch[pickle.BUILD[0]] = load_build

        def read_wrapped_array(self, w: Any) -> np.ndarray:
            """Check a joblib array header before anything is allocated, then read the data."""
            state = vars(w)
            shape = state.get("shape")
            dtype = state.get("dtype")
            if state.get("subclass") is not ndarray_marker:
                raise _Refused("an array of another class than numpy.ndarray")
            if not isinstance(dtype, np.dtype) or dtype.hasobject:
                raise _Refused("an array of Python objects")
            if (not isinstance(shape, tuple) or len(shape) > 32
                    or not all(type(n) is int and n >= 0 for n in shape)):
                raise _Refused("an array with a malformed shape")
            if state.get("order") not in ("C", "F"):
                raise _Refused("an array with a malformed memory order")
            if state.get("numpy_array_alignment_bytes", None) not in (None, 8, 16):
                raise _Refused("an array with a malformed alignment")
            count = 1
            for n in shape:
                count *= n
            if count * max(dtype.itemsize, 1) > self.budget:
                raise _Refused("an array larger than the file")
            w.subclass = np.ndarray
            return w.read_array(self, ensure_native_byte_order=True)

        def _shared(self) -> None:
            # Containers are written once; a second reference to one (a pickle "memo get")
            # only appears in crafted files, where nested sharing blows up into an exponential
            # number of visits for anything that walks the data.
            value = self.stack[-1]
            if isinstance(value, (dict, list, set, frozenset, tuple, bytearray)) and len(value):
                raise _Refused("a container referenced twice")

        def load_get(self) -> None:
            pickle._Unpickler.load_get(self)
            self._shared()

        def load_binget(self) -> None:
            pickle._Unpickler.load_binget(self)
            self._shared()

        def load_long_binget(self) -> None:
            pickle._Unpickler.load_long_binget(self)
            self._shared()

        dispatch[pickle.GET[0]] = load_get
        dispatch[pickle.BINGET[0]] = load_binget
        dispatch[pickle.LONG_BINGET[0]] = load_long_binget

    _SAFE_UNPICKLER = SafeUnpickler
    return SafeUnpickler


_SAFE_UNPICKLER: type | None = None


def load_joblib(path: str | Path, max_bytes: int = MAX_RESULT_BYTES) -> Any:
    """Load a joblib file without executing anything from it.

    Plain containers, strings, numbers and numpy arrays of plain dtypes load; a file that asks
    for anything else is "not a dqnrun result file, or unsafe"; a damaged one is "truncated or
    not a joblib result file". Compressed joblib files (zlib, gzip, bz2, xz, lzma) load too,
    with their decompressed size capped like the file's.
    """
    from joblib.numpy_pickle_utils import _detect_compressor, _COMPRESSORS

    path = Path(path)
    with open_regular(path, "result file", max_bytes) as raw:
        try:
            compressor = _detect_compressor(raw)
            if compressor == "compat":
                raise _Refused("joblib's pre-0.10 format, which stores arrays in other files")
            stream: Any = raw
            if compressor in _COMPRESSORS:
                stream = _COMPRESSORS[compressor].decompressor_file(raw)
            stream = io.BufferedReader(_Budget(stream, max_bytes), buffer_size=1 << 16)
            return _unpickler_class()(stream, max_bytes).load()
        except _Refused as exc:
            raise UserError(f"{path}: not a dqnrun result file, or unsafe ({exc})") from None
        except (MemoryError, RecursionError):
            raise UserError(f"{path}: not a dqnrun result file, or unsafe (it is too large to load)") from None
        except Exception:
            if path.suffix != ".joblib":  # README.md, a figure, a config: not damaged, just not a result
                raise UserError(f"{path} is not a dqnrun result file: name a run directory or a .joblib "
                                "result file") from None
            raise UserError(f"{path} is truncated or not a joblib result file") from None


# ---------------------------------------------------------------------------------------------
# Writing: output guards and fault messages


_CAUSES = {
    errno.ENOSPC: "disk full",
    getattr(errno, "EDQUOT", -1): "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "no such directory",
    errno.ENOTDIR: "a parent is not a directory",
    errno.EISDIR: "it is a directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.EEXIST: "it already exists",
    errno.EIO: "input/output error",
}


def describe_oserror(exc: OSError) -> str:
    """The cause of an OSError in a few words ("disk full", "read-only file system", ...)."""
    return _CAUSES.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()


def check_output(path: str | Path, force: bool = False, option: str = "--force") -> Path:
    """Check before any work that `path` can be written as a new file (or, with `force`,
    replace an existing one); otherwise a UserError naming the path and the cause."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a directory; name a file inside it")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise UserError(f"cannot write {path}: it exists and is not a regular file")
        if not force:
            raise UserError(f"{path} already exists; add {option} to replace it")
    parent = path.parent
    if not parent.is_dir():
        cause = "no such directory" if not parent.exists() else "it is not a directory"
        raise UserError(f"cannot write {path}: {parent} ({cause})")
    if not os.access(parent, os.W_OK | os.X_OK):
        cause = "read-only file system" if _read_only_fs(parent) else "permission denied"
        raise UserError(f"cannot write {path}: {cause}")
    return path


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


@contextmanager
def output_errors(path: str | Path, fault: bool = False) -> Iterator[None]:
    """Turn an OSError while writing `path` into one line: a UserError (exit 2) for a file the
    user asked for, a Fault (exit 1) for a write in the middle of training."""
    try:
        yield
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, (str, os.PathLike)) else path
        message = f"cannot write {where}: {describe_oserror(exc)}"
        if fault:
            message += "; stopped, with each seed's last checkpoint kept"
        raise (Fault(message) if fault else UserError(message)) from None
