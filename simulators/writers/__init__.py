"""Writers that put simulated changes into real sources: PostgreSQL, MariaDB, drop folders, push."""
