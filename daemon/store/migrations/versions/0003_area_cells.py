"""areas are laid out in cells: the grid of each area and its cells

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 17:05:00

Areas imported before have no grid (NULL) and no cells until they are imported again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('areas', sa.Column('grid', sa.Text(), nullable=True))
    op.create_table('cells',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('area_id', sa.String(), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('row', sa.Integer(), nullable=False),
    sa.Column('col', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_cells_area_id', 'cells', ['area_id'])
    op.create_index('ix_cells_shard', 'cells', ['shard'])


def downgrade() -> None:
    op.drop_index('ix_cells_shard', table_name='cells')
    op.drop_index('ix_cells_area_id', table_name='cells')
    op.drop_table('cells')
    with op.batch_alter_table('areas') as batch:
        batch.drop_column('grid')
