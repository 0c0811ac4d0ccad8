"""Every SQL statement history runs, as named constants grouped by table or
operation. No other module of services/history holds SQL, and no statement is
built at run time: fragments are composed from constants at import."""
