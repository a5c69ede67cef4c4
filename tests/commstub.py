"""A stand-in for NNabla's ``MultiProcessDataParalellCommunicator``, for the tests only: the
ranks are processes on this machine (NNabla's parameter store is process-wide, so two ranks
cannot share one process), joined by multiprocessing connections; rank 0 sums. No GPU, no
MPI. ``python tests/commstub.py RANK SIZE ADDRESS RECORD char_lm-args...`` runs one rank of
examples/char_lm.py with it, and RECORD (.npz) keeps the first all_reduce's arrays before
and after."""
import os
import runpy
import sys
import time
from multiprocessing.connection import Client, Listener

import numpy as np

KEY = b'nnlstm-tests'


class PipeCommunicator:
    """``rank``, ``local_rank``, ``size`` and ``all_reduce(arrays, division, inplace)`` as
    NNabla's communicator has them."""

    def __init__(self, rank, size, address, record=None):
        self.rank = self.local_rank = rank
        self.size = size
        self.record = record
        if rank == 0:
            with Listener(address, authkey=KEY) as listener:
                self.peers = [listener.accept() for _ in range(size - 1)]
        else:
            deadline = time.time() + 60
            while True:
                try:
                    self.peers = [Client(address, authkey=KEY)]
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if time.time() > deadline:
                        raise
                    time.sleep(0.05)

    def all_reduce(self, data, division=False, inplace=False):
        arrays = list(data) if isinstance(data, (list, tuple)) else [data]
        mine = [a.data.copy() for a in arrays]
        if self.rank == 0:
            total = [m.astype(np.float64) for m in mine]
            for peer in self.peers:
                for t, theirs in zip(total, peer.recv()):
                    t += theirs
            total = [t / self.size for t in total] if division else total
            for peer in self.peers:
                peer.send(total)
        else:
            self.peers[0].send(mine)
            total = self.peers[0].recv()
        for a, t in zip(arrays, total):
            a.data = t
        if self.record:
            np.savez(self.record, *(mine + [a.data for a in arrays]))
            self.record = None


if __name__ == '__main__':
    rank, size, address, record = sys.argv[1:5]
    here = os.path.dirname(os.path.abspath(__file__))
    char_lm = runpy.run_path(os.path.join(here, '..', 'examples', 'char_lm.py'))
    comm = PipeCommunicator(int(rank), int(size), address, record)
    char_lm['main'](sys.argv[5:], comm=comm)
