"""The observation log: each target's observations of a season and the outputs after each

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import eowatch.daemon.store.tables

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = eowatch.daemon.store.tables.UTCDateTime
COLUMNS = ('times', 'bands', 'outputs', 'stops', 'flags')


def upgrade() -> None:
    op.create_table(
        'observation_log',
        sa.Column('model', sa.String(), nullable=False),
        sa.Column('target_id', sa.String(), nullable=False),
        sa.Column('season', sa.Integer(), nullable=False),
        *(sa.Column(name, sa.LargeBinary(), nullable=False) for name in COLUMNS),
        sa.Column('updated_at', TIME(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('model', 'target_id', 'season'))
    op.create_index('ix_observation_log_updated_at', 'observation_log', ['updated_at'])


def downgrade() -> None:
    op.drop_index('ix_observation_log_updated_at', table_name='observation_log')
    op.drop_table('observation_log')
