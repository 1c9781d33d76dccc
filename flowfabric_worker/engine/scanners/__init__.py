"""The maintenance scanners of spec 05 §7: the execution lifecycle
(:mod:`.catalogue`) and budgets and quotas (:mod:`.budgets`). Flow scanners
are in :mod:`..flows`; the loop that runs them all in :mod:`..runner`."""
