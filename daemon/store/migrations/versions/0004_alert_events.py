"""alerts carry their flood event and observation time, for the API's filters

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import eowatch.daemon.store.tables

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.add_column(sa.Column('event_id', sa.String(), nullable=True))
        batch.add_column(sa.Column('observed_at',
                                   eowatch.daemon.store.tables.UTCDateTime(timezone=True),
                                   nullable=True))
        batch.create_index('ix_alerts_event_id', ['event_id'])
        batch.create_index('ix_alerts_observed_at', ['observed_at'])


def downgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.drop_index('ix_alerts_observed_at')
        batch.drop_index('ix_alerts_event_id')
        batch.drop_column('observed_at')
        batch.drop_column('event_id')
