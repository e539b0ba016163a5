"""The Liquidity Lens on the simulator's book: order-flow imbalance, book pressure, liquidity density.

* **OFI** (Cont, Kukanov & Stoikov 2014, "The Price Impact of Order Book Events", *J. Financial
  Econometrics* 12(1), eq. 2-3): between two top-of-book states n-1 -> n (best bid/ask prices P, lots q),
  e_n = q^b_n 1[P^b_n >= P^b_{n-1}] - q^b_{n-1} 1[P^b_n <= P^b_{n-1}]
        - q^a_n 1[P^a_n <= P^a_{n-1}] + q^a_{n-1} 1[P^a_n >= P^a_{n-1}]
  (lots; > 0 = net buying pressure).  The paper sums e_n over every book event of an interval; the
  execution environment samples the book once per decision step, so it uses one e per step from the two
  snapshots (a coarser OFI, stated as such).
* **Book pressure** over the top k ticks: (D^b_k - D^a_k) / (D^b_k + D^a_k), D the resting lots within k
  ticks of each side's best (0 for an empty book).
* **Liquidity density**: (D^b_k + D^a_k) / (2 k), resting lots per tick within k ticks of the bests.
"""

from __future__ import annotations

from numba import njit

from forge.sim.book_nb import BUY, SELL, book_depth_nb
from forge.sim.nbopts import NO_NRT


@njit(**NO_NRT)
def ofi_nb(pb0, qb0, pa0, qa0, pb1, qb1, pa1, qa1):
    """One OFI increment e (lots, float64) from top of book (pb0, qb0, pa0, qa0) to (pb1, qb1, pa1, qa1)."""
    e = 0.0
    if pb1 >= pb0:
        e += qb1
    if pb1 <= pb0:
        e -= qb0
    if pa1 <= pa0:
        e -= qa1
    if pa1 >= pa0:
        e += qa0
    return e


@njit(**NO_NRT)
def book_pressure_nb(lv, bk, k):
    """(bid lots - ask lots) / (bid + ask lots) within ``k`` ticks of each best; 0.0 for an empty book."""
    b = book_depth_nb(lv, bk, BUY, k)
    a = book_depth_nb(lv, bk, SELL, k)
    tot = b + a
    if tot == 0:
        return 0.0
    return (b - a) / tot


@njit(**NO_NRT)
def liquidity_density_nb(lv, bk, k):
    """Resting lots per tick within ``k`` ticks of the two bests (float64)."""
    return (book_depth_nb(lv, bk, BUY, k) + book_depth_nb(lv, bk, SELL, k)) / (2.0 * k)
